from __future__ import annotations

import pytest

from dialsum.postprocess import ablate, apply_rules, RULES


@pytest.mark.parametrize("rule,given,expected", [
    ("strip_prompt_echo", "### Response: #Person1#은 간다.", "#Person1#은 간다."),
    ("strip_prompt_echo", "요약: 민수는 간다.\n### Input: 더", "민수는 간다."),
    ("strip_prompt_echo", "<|assistant|>민수는 간다.", "민수는 간다."),
    ("first_paragraph", "민수는 간다.\n\n그리고 추가 설명", "민수는 간다."),
    ("normalise_speaker_tags", "#Person1# 은 Person2에게 # Person3 #를 소개한다.", "#Person1#은 #Person2#에게 #Person3#를 소개한다."),
    ("drop_repeated_sentences", "민수는 간다. 민수는 간다. 지현은 온다.", "민수는 간다. 지현은 온다."),
    ("drop_garbage_runs", "민수는 ìĿĢ 병원에 간다!!!!!!", "민수는 병원에 간다!"),
    ("normalise_whitespace", " 민수는   간다 \n", "민수는 간다"),
    ("final_punctuation", "민수는 간다", "민수는 간다."),
    ("final_punctuation", "민수는 간다?", "민수는 간다?"),
])
def test_rules(rule, given, expected):
    assert RULES[rule](given) == expected


def test_empty_result_falls_back_to_input():
    assert apply_rules("### Response:", ["strip_prompt_echo"]) == "### Response:"


def test_ablate_keeps_only_rules_that_help_on_one_half_and_do_not_hurt_the_other():
    refs = [["민수는 병원에 간다."], ["지현은 학교에 온다."], ["준호는 집에 간다."], ["수아는 밥을 먹는다."]]
    preds = ["요약: 민수는 병원에 간다.", "요약: 지현은 학교에 온다.", "준호는 집에 간다.", "수아는 밥을 먹는다."]

    def exact(p, r):  # share of exact matches: a metric where each rule's effect is obvious
        return sum(a == b[0] for a, b in zip(p, r)) / len(p)

    enabled, gains = ablate(preds, refs, ["strip_prompt_echo", "final_punctuation", "drop_repeated_sentences"], exact)
    assert enabled == ["strip_prompt_echo"]
    g = {x.rule: x for x in gains}
    assert g["strip_prompt_echo"].delta == pytest.approx(0.5) and g["strip_prompt_echo"].enabled
    assert g["drop_repeated_sentences"].delta == 0 and not g["drop_repeated_sentences"].enabled


def test_ablate_cli_on_real_dev_predictions():
    from conftest import run_cli, shared_file

    pred = shared_file("ko/dev_200_kobart_predictions.csv")
    refs = shared_file("ko/dev_200.csv")
    r = run_cli("postprocess", "--ablate", "--pred", str(pred), "--refs", str(refs))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["rule", "on", "off", "delta"]
    assert {ln.split()[0] for ln in lines[1:-1]} == set(RULES)
    for ln in lines[1:-1]:
        name, on, off, delta, a, b, enabled = ln.split()
        assert float(delta) == pytest.approx(float(on) - float(off), abs=2e-4)
        assert (enabled == "yes") == (max(float(a), float(b)) > 0 and min(float(a), float(b)) >= 0)
    assert lines[-1].startswith("enabled rules:")
