"""Write dialsum's shipped sample data (data/sample/*.csv) in the competition's exact format.

The dialogues are composed from hand-written Korean scenarios with slot values drawn from a seeded RNG, so the
files are reproducible (`python scripts/make_sample_data.py`) and each summary really follows from its dialogue,
which gives the tiny model something learnable. Nothing here is copied from the competition data.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

NAMES = ["민수", "지현", "서연", "준호", "하은", "도윤", "수아", "지훈", "Tom", "Emma", "James", "소피아"]
TIMES = ["오전 9시", "오전 10시 30분", "오후 1시", "오후 3시", "오후 4시 30분", "저녁 7시"]
DAYS = ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "내일", "다음 주 화요일"]
FOODS = ["김치찌개", "비빔밥", "불고기", "파스타", "냉면", "초밥", "된장찌개"]
CITIES = ["부산", "제주도", "강릉", "경주", "전주", "여수"]
ITEMS = ["겨울 코트", "운동화", "노트북 가방", "청바지", "우산", "가죽 지갑"]
COLORS = ["검은색", "파란색", "회색", "빨간색", "흰색"]
SYMPTOMS = [("두통이 심하고 열이 나요", "두통과 열"), ("목이 아프고 기침이 나요", "목 통증과 기침"),
            ("허리가 계속 아파요", "계속되는 허리 통증"), ("배가 아프고 소화가 안 돼요", "복통과 소화불량")]
JOBS = ["마케팅 팀", "영업 부서", "개발 팀", "회계 부서", "디자인 팀"]
HOBBIES = ["수영", "등산", "기타 연주", "요리", "사진 찍기", "테니스"]
PLACES = ["도서관", "우체국", "시청", "지하철역", "박물관", "병원"]


def josa(word: str, pair: str) -> str:
    """Attach the particle that fits the word's last syllable: josa("운동화", "을/를") -> "운동화를"."""
    with_final, without = pair.split("/")
    last = word[-1]
    if "가" <= last <= "힣":
        final = (ord(last) - 0xAC00) % 28
        if pair == "으로/로" and final == 8:  # ㄹ takes 로
            return word + without
        return word + (with_final if final else without)
    return word + (without if last.lower() in "aeiouy" else with_final)


def _pick(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(pool)


def doctor(rng):
    (s, s_noun), d, t = rng.choice(SYMPTOMS), _pick(rng, DAYS), _pick(rng, TIMES)
    turns = [
        ("1", "안녕하세요, 어디가 불편하세요?"),
        ("2", f"며칠 전부터 {s}."),
        ("1", "언제부터 그랬나요? 약은 드셨어요?"),
        ("2", "사흘 정도 됐고, 약국에서 산 약을 먹었는데 나아지지 않았어요."),
        ("1", "검사를 좀 해 보는 게 좋겠습니다. 처방전을 드릴 테니 하루 세 번 드세요."),
        ("2", f"알겠습니다. 다시 와야 하나요?"),
        ("1", f"{d} {t}에 다시 오셔서 결과를 확인하세요."),
    ]
    summ = f"#Person2#는 며칠째 {josa(s_noun, '으로/로')} 의사를 찾아옵니다. 의사는 약을 처방하고 {d} {t}에 다시 오라고 합니다."
    return turns, summ, "의사 상담"


def restaurant(rng):
    f1, f2 = rng.sample(FOODS, 2)
    n = rng.randint(2, 6)
    turns = [
        ("1", f"어서 오세요. 몇 분이세요?"),
        ("2", f"{n}명이에요. 창가 자리 있나요?"),
        ("1", "네, 이쪽으로 앉으세요. 주문하시겠어요?"),
        ("2", f"{f1} 두 개랑 {f2} 하나 주세요. 너무 맵지 않게 해 주세요."),
        ("1", "음료는 필요 없으세요?"),
        ("2", "물이면 충분해요. 계산은 카드로 할게요."),
    ]
    summ = f"#Person2#는 {n}명이 앉을 창가 자리를 요청하고 {f1} 두 개와 {f2} 하나를 맵지 않게 주문합니다."
    return turns, summ, "식당 주문"


def travel(rng):
    c, d = _pick(rng, CITIES), _pick(rng, DAYS)
    a, b = rng.sample(NAMES, 2)
    nights = rng.randint(2, 4)
    turns = [
        ("1", f"{b}, 이번 휴가 때 어디 갈지 정했어?"),
        ("2", f"{c}에 가 볼까 생각 중이야. 바다도 보고 맛있는 것도 먹고 싶어."),
        ("1", f"좋다! 나도 같이 가도 돼? 며칠 있을 거야?"),
        ("2", f"{nights}박 정도 생각하고 있어. {d}에 출발하면 어때?"),
        ("1", "좋아. 숙소는 내가 알아볼게. 기차표는 네가 예매해 줄래?"),
        ("2", "알겠어. 오늘 저녁에 바로 예매할게."),
    ]
    summ = f"#Person1#과 #Person2#는 {d}에 {josa(c, '으로/로')} {nights}박 여행을 가기로 합니다. #Person1#은 숙소를, #Person2#는 기차표를 알아보기로 합니다."
    return turns, summ, "여행 계획"


def shopping(rng):
    item, c1, c2 = _pick(rng, ITEMS), *rng.sample(COLORS, 2)
    price = rng.choice([39000, 55000, 72000, 89000, 120000])
    turns = [
        ("1", "찾으시는 물건 있으세요?"),
        ("2", f"{josa(item, '을/를')} 보고 있는데요, {c1}도 있나요?"),
        ("1", f"죄송하지만 {josa(c1, '은/는')} 다 팔렸어요. {josa(c2, '은/는')} 어떠세요?"),
        ("2", "한번 볼게요. 가격이 얼마예요?"),
        ("1", f"{price:,}원인데 이번 주까지 10퍼센트 할인해 드려요."),
        ("2", f"그럼 {josa(c2, '으로/로')} 살게요."),
    ]
    summ = f"#Person2#는 {c1} {josa(item, '을/를')} 찾았지만 다 팔려서 10퍼센트 할인된 {c2} {josa(item, '을/를')} 삽니다."
    return turns, summ, "쇼핑"


def interview(rng):
    job, a = _pick(rng, JOBS), _pick(rng, NAMES)
    years = rng.randint(2, 8)
    turns = [
        ("1", f"{a} 씨, 자기소개 부탁드립니다."),
        ("2", f"안녕하세요. 저는 {years}년 동안 비슷한 일을 해 왔고, {job}에서 일하고 싶어 지원했습니다."),
        ("1", "이전 직장을 그만둔 이유가 뭔가요?"),
        ("2", "더 큰 프로젝트를 맡으면서 성장하고 싶었습니다."),
        ("1", "언제부터 출근할 수 있나요?"),
        ("2", "다음 달 초부터 가능합니다."),
        ("1", "알겠습니다. 결과는 일주일 안에 #Email#로 알려 드리겠습니다."),
    ]
    summ = f"{josa(a, '은/는')} {years}년 경력으로 {job}에 지원해 면접을 봅니다. 다음 달 초부터 출근할 수 있으며 결과는 일주일 안에 이메일로 받습니다."
    return turns, summ, "면접"


def directions(rng):
    p = _pick(rng, PLACES)
    m = rng.choice([5, 10, 15])
    turns = [
        ("1", f"실례합니다. {p}에 어떻게 가나요?"),
        ("2", "이 길로 쭉 가다가 두 번째 사거리에서 오른쪽으로 도세요."),
        ("1", "걸어서 얼마나 걸려요?"),
        ("2", f"{m}분 정도 걸려요. 큰 은행 건물 바로 옆에 있어요."),
        ("1", "감사합니다!"),
    ]
    summ = f"#Person1#이 {p} 가는 길을 묻자 #Person2#는 두 번째 사거리에서 오른쪽으로 돌면 걸어서 {m}분 걸린다고 알려줍니다."
    return turns, summ, "길 안내"


def apartment(rng):
    rent = rng.choice([50, 65, 80, 95])
    rooms = rng.choice([1, 2, 3])
    turns = [
        ("1", "부동산입니다. 무엇을 도와드릴까요?"),
        ("2", f"방 {rooms}개짜리 집을 찾고 있어요. 월세는 {rent}만 원 이하였으면 좋겠어요."),
        ("1", "#Address#에 마침 좋은 집이 하나 있어요. 역에서 가깝고 햇빛도 잘 들어요."),
        ("2", "언제 볼 수 있을까요?"),
        ("1", "오늘 오후에 가능합니다. 연락처를 남겨 주시겠어요?"),
        ("2", "제 번호는 #PhoneNumber#입니다."),
    ]
    summ = f"#Person2#는 월세 {rent}만 원 이하의 방 {rooms}개짜리 집을 찾습니다. #Person1#은 역에서 가까운 집을 소개하고 오늘 오후에 보여주기로 합니다."
    return turns, summ, "집 구하기"


def birthday(rng):
    a = _pick(rng, NAMES)
    d, f = _pick(rng, DAYS), _pick(rng, FOODS)
    turns = [
        ("1", f"{josa(d, '이/가')} {a} 생일인 거 알지?"),
        ("2", "맞다, 깜빡할 뻔했어. 깜짝 파티 해 줄까?"),
        ("1", f"좋아. {josa(a, '이/가')} {josa(f, '을/를')} 좋아하니까 그걸 준비하자."),
        ("2", "케이크는 내가 사 올게. 다른 친구들한테도 연락할까?"),
        ("1", "응, 내가 단체 문자 보낼게. 비밀로 해야 해!"),
    ]
    summ = f"#Person1#과 #Person2#는 {d} {a}의 생일에 깜짝 파티를 열기로 합니다. {josa(f, '을/를')} 준비하고 #Person2#가 케이크를 사 오며 #Person1#이 친구들에게 연락합니다."
    return turns, summ, "생일 파티"


def hobby(rng):
    h = _pick(rng, HOBBIES)
    n = rng.randint(2, 12)
    turns = [
        ("1", "요즘 주말에 뭐 해?"),
        ("2", f"{josa(h, '을/를')} 배우고 있어. 시작한 지 {n}개월 됐어."),
        ("1", "와, 재미있어? 나도 해 보고 싶었는데."),
        ("2", "스트레스가 풀려서 좋아. 다음에 같이 가 보자."),
        ("1", "좋아, 다음 주말에 같이 가자."),
    ]
    summ = f"#Person2#는 {n}개월 전부터 주말에 {josa(h, '을/를')} 배우고 있습니다. #Person1#은 다음 주말에 #Person2#와 함께 해 보기로 합니다."
    return turns, summ, "취미"


def bank(rng):
    amount = rng.choice([30, 50, 100, 200])
    turns = [
        ("1", "안녕하세요, 어떤 업무 보러 오셨어요?"),
        ("2", f"계좌를 새로 만들고 {amount}만 원을 입금하려고요."),
        ("1", "신분증 있으세요? 그리고 이 서류에 생년월일과 주소를 적어 주세요."),
        ("2", "여기 있습니다. 체크카드도 같이 만들 수 있나요?"),
        ("1", "네, 카드는 일주일 안에 #Address#로 보내 드릴게요."),
    ]
    summ = f"#Person2#는 은행에서 새 계좌를 만들고 {amount}만 원을 입금합니다. 체크카드도 신청해서 일주일 안에 집으로 받기로 합니다."
    return turns, summ, "은행 업무"


def meeting(rng):
    d, t, job = _pick(rng, DAYS), _pick(rng, TIMES), _pick(rng, JOBS)
    turns = [
        ("1", f"{job} 회의를 {d} {t}로 옮겨도 될까요?"),
        ("2", "그 시간엔 고객 미팅이 있어서 어려울 것 같아요."),
        ("1", "그럼 한 시간 뒤는 어때요?"),
        ("2", "그건 괜찮아요. 회의실은 제가 예약할게요."),
        ("1", "고마워요. 자료는 제가 미리 메일로 보낼게요."),
    ]
    summ = f"#Person1#은 {job} 회의를 {d} {t}로 옮기자고 하지만 #Person2#의 고객 미팅 때문에 한 시간 뒤로 정합니다. #Person2#가 회의실을 예약하고 #Person1#이 자료를 보냅니다."
    return turns, summ, "일정 조율"


def lost_item(rng):
    item, p = _pick(rng, ITEMS), _pick(rng, PLACES)
    turns = [
        ("1", "분실물 센터입니다. 무엇을 잃어버리셨어요?"),
        ("2", f"어제 {p} 근처에서 {josa(item, '을/를')} 잃어버렸어요."),
        ("1", "어떤 특징이 있나요?"),
        ("2", "안쪽에 제 이름이 적혀 있어요."),
        ("1", "찾으면 연락드릴게요. 전화번호를 알려 주세요."),
        ("2", "#PhoneNumber#입니다. 꼭 좀 부탁드려요."),
    ]
    summ = f"#Person2#는 어제 {p} 근처에서 이름이 적힌 {josa(item, '을/를')} 잃어버렸다고 분실물 센터에 신고하고 전화번호를 남깁니다."
    return turns, summ, "분실물"


def three_friends(rng):
    f, t = _pick(rng, FOODS), _pick(rng, TIMES)
    turns = [
        ("1", "오늘 저녁 같이 먹을래?"),
        ("2", f"좋아. {f} 어때?"),
        ("3", "나도 갈래! 나는 조금 늦게 끝나는데 괜찮아?"),
        ("1", f"그럼 {t}에 학교 앞에서 만나자."),
        ("3", "알겠어. 늦으면 먼저 주문해 줘."),
    ]
    summ = f"#Person1#, #Person2#, #Person3#는 {t}에 학교 앞에서 만나 {josa(f, '을/를')} 먹기로 합니다. #Person3#는 늦을 수 있어 먼저 주문해 달라고 합니다."
    return turns, summ, "친구 약속"


SCENARIOS = [doctor, restaurant, travel, shopping, interview, directions, apartment, birthday, hobby, bank,
             meeting, lost_item, three_friends]


def make_rows(n: int, prefix: str, rng: random.Random, seen: set[str]) -> list[dict[str, str]]:
    """n rows whose dialogues appear nowhere else (`seen` spans all splits: no train/dev/test leak)."""
    rows = []
    i = 0
    while len(rows) < n:
        turns, summary, topic = SCENARIOS[(i + rng.randint(0, len(SCENARIOS) - 1)) % len(SCENARIOS)](rng)
        dialogue = "\n".join(f"#Person{who}#: {text}" for who, text in turns)
        i += 1
        if dialogue in seen:
            continue
        seen.add(dialogue)
        rows.append({"fname": f"{prefix}_{len(rows)}", "dialogue": dialogue, "summary": summary, "topic": topic})
    return rows


def write(path: Path, rows: list[dict[str, str]], fields: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def main(out: Path = Path(__file__).resolve().parents[1] / "data" / "sample") -> None:
    rng = random.Random(20261126)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    train, dev, test = (make_rows(72, "train", rng, seen), make_rows(48, "dev", rng, seen),
                        make_rows(24, "test", rng, seen))
    write(out / "train.csv", train, ["fname", "dialogue", "summary", "topic"])
    write(out / "dev.csv", dev, ["fname", "dialogue", "summary", "topic"])
    write(out / "test.csv", test, ["fname", "dialogue"])
    with (out / "sample_submission.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "fname", "summary"])
        for i, r in enumerate(test):
            w.writerow([i, r["fname"], "요약문입니다."])


if __name__ == "__main__":
    main()
