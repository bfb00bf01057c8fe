from __future__ import annotations

import pytest

from dialsum.postprocess import RULES, LengthCap, ablate, apply_rules, cap_length, length_cap_grid


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


def exact(p, r):  # per row: an exact match scores 1 (a metric where each rule's effect is obvious)
    return [float(a == b[0]) for a, b in zip(p, r)]


def test_ablate_keeps_only_rules_whose_gain_beats_one_standard_error():
    refs = [["민수는 병원에 간다."], ["지현은 학교에 온다."], ["준호는 집에 간다."], ["수아는 밥을 먹는다."]]
    preds = ["요약: 민수는 병원에 간다.", "요약: 지현은 학교에 온다.", "준호는 집에 간다.", "수아는 밥을 먹는다."]
    enabled, cap, gains = ablate(preds, refs, ["strip_prompt_echo", "final_punctuation", "drop_repeated_sentences"],
                                 exact)
    assert enabled == ["strip_prompt_echo"] and cap is None
    g = {x.rule: x for x in gains}
    # per-row gains [1, 1, 0, 0]: mean 0.5, standard error std/sqrt(4) = 0.2887
    assert g["strip_prompt_echo"].delta == pytest.approx(0.5) and g["strip_prompt_echo"].gain == pytest.approx(0.5)
    assert g["strip_prompt_echo"].se == pytest.approx(0.57735026919 / 2) and g["strip_prompt_echo"].enabled
    assert g["drop_repeated_sentences"].delta == 0 and not g["drop_repeated_sentences"].enabled
    assert g["drop_repeated_sentences"].why == "changes nothing"


def _tilted(effects):
    """Rows whose score moves by effects[i] when final_punctuation adds the full stop: a rule with a known per-row
    gain, scored through the real ablation."""
    preds = [f"행 {i}" for i in range(len(effects))]
    refs = [[p] for p in preds]

    def rows(p, r):
        return [10.0 + (effects[i] if t.endswith(".") else 0.0) for i, t in enumerate(p)]

    return ablate(preds, refs, ["final_punctuation"], rows)


def test_one_standard_error_rule_rejects_a_gain_within_noise_and_keeps_a_clear_one():
    noise = [1.1, -1.0] * 20  # mean +0.05, standard error ~0.17: helps "on average" on these rows, by chance
    enabled, _, (g,) = _tilted(noise)
    assert enabled == [] and not g.enabled and g.gain == pytest.approx(0.05) and g.se > g.gain
    assert g.why.startswith("gain within one standard error")
    clear = [1.0 + (0.1 if i % 2 else -0.1) for i in range(40)]  # mean +1, standard error ~0.016
    enabled, _, (g,) = _tilted(clear)
    assert enabled == ["final_punctuation"] and g.enabled and g.gain == pytest.approx(1.0) and g.se < 0.02
    hurts = [-0.5] * 40
    enabled, _, (g,) = _tilted(hurts)
    assert enabled == [] and g.why == "does not help"


def test_ablate_cli_on_real_dev_predictions():
    from conftest import run_cli, shared_file

    pred = shared_file("ko/dev_200_kobart_predictions.csv")
    refs = shared_file("ko/dev_200.csv")
    r = run_cli("postprocess", "--ablate", "--pred", str(pred), "--refs", str(refs))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:7] == ["rule", "on", "off", "delta", "gain", "se", "enabled"]
    assert {ln.split()[0] for ln in lines[1:-2]} == set(RULES)
    assert lines[-2].startswith("length_cap(")
    for ln in lines[1:-1]:
        name, on, off, delta, gain, se, enabled, *why = ln.split()
        assert float(delta) == pytest.approx(float(on) - float(off), abs=2e-4)
        assert (enabled == "yes") == (float(gain) > float(se) and float(gain) > 0) and why
    assert lines[-1].startswith("enabled rules:")


def test_cap_length_keeps_whole_sentences_under_both_caps():
    t = "가 나 다. 라 마. 바 사 아 자."
    assert cap_length(t, LengthCap(max_sentences=2)) == "가 나 다. 라 마."
    assert cap_length(t, LengthCap(max_morphemes=5)) == "가 나 다. 라 마."
    assert cap_length(t, LengthCap(max_morphemes=4)) == "가 나 다."
    assert cap_length(t, LengthCap(max_morphemes=1)) == "가 나 다."  # the first sentence always stays
    assert apply_rules(t, [], LengthCap(max_sentences=1)) == "가 나 다."


def test_length_cap_is_chosen_by_cross_validation_and_kept_only_beyond_noise():
    refs = [["민수는 병원에 간다."], ["지현은 학교에 온다."], ["준호는 집에 간다."], ["수아는 밥을 먹는다."]]
    preds = [r[0] + " 그리고 덧붙인 말이다. 또 다른 말이다." for r in refs]
    grid = length_cap_grid(refs, lambda x: len(x.split()))
    assert LengthCap(max_sentences=1) in grid and LengthCap(max_morphemes=3) in grid
    enabled, cap, gains = ablate(preds, refs, [], exact, grid)
    assert enabled == [] and cap == LengthCap(max_sentences=1)
    assert gains[-1].rule == "length_cap(sentences<=1)" and gains[-1].delta == 1.0 and gains[-1].gain == 1.0
    # already short predictions: no cap helps, none is kept
    _, cap, gains = ablate([r[0] for r in refs], refs, [], exact, grid)
    assert cap is None and not gains[-1].enabled


def test_postprocess_stage_fits_on_dev_select_only_and_counts_empty_outputs(tmp_path, sample_data, capsys):
    """The stage: rules fitted on dev-select picks only; an empty output becomes a fixed sentence, logged and counted."""
    import csv

    from conftest import SAMPLE
    from dialsum.io.devsplit import split_dev
    from dialsum.stages.postprocess import FALLBACK_SUMMARY, run as postprocess

    split = split_dev(sample_data.dev, 0.5, 1)
    rows = [[d.fname, "dev", "요약: " + d.summary, "s"] for d in sample_data.dev]
    rows += [[d.fname, "test", "요약: 대화.", "s"] for d in sample_data.test]
    report_only = split.report[0]
    rows[[r[0] for r in rows].index(report_only)][2] = ""  # empty on a dev-report row
    rows[-1][2] = "   "
    picks = tmp_path / "picks.csv"
    with open(picks, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["fname", "split", "summary", "source"], *rows])
    inputs = {"metric": {"semantics": "pltrdy", "tokenizer": "mecab"},
              "postprocess": {"rules": ["strip_prompt_echo", "final_punctuation"], "ablate": True,
                              "tune_length_cap": False, "max_sentences": None, "max_morphemes": None},
              "dev_select": list(split.select), "dev_report": list(split.report)}
    out = tmp_path / "pp"
    out.mkdir()
    res = postprocess(inputs, {"data_dir": str(SAMPLE), "picks": str(picks)}, out)
    assert res["fitted"]["rules"] == ["strip_prompt_echo"]  # '요약: ' echo stripped: a gain; punctuation changes nothing
    assert res["empty_replaced"] == {"dev": 1, "test": 1}
    err = capsys.readouterr().err
    assert "1 empty dev output(s) replaced" in err and "1 empty test output(s) replaced" in err
    with open(out / "final.csv", encoding="utf-8") as f:
        final = {(r["split"], r["fname"]): r["summary"] for r in csv.DictReader(f)}
    assert final[("dev", report_only)] == FALLBACK_SUMMARY == final[("test", sample_data.test[-1].fname)]
    assert final[("dev", split.select[0])] == next(d.summary for d in sample_data.dev if d.fname == split.select[0])


def _noise_score(salt: int):
    """Every distinct (row, text) scores an independent pseudo-random draw: no cap is really better than another."""
    import zlib

    def rows(texts, refs):
        return [(zlib.crc32(f"{salt}|{i}|{t}".encode()) % 10_000) / 100.0 for i, t in enumerate(texts)]
    return rows


def test_a_cap_whose_gain_is_only_in_sample_is_refused():
    """Twenty caps, each changing every row's score at random: the best of them gains on the rows it was picked on,
    by selection alone. Chosen on the other folds it gains nothing on the held-out one, so the one-SE rule refuses it
    in all but chance cases (1 of 12 noise draws here; the rule's false-keep rate is ~1/6 at most), where judging it
    on the rows it was chosen on keeps it in 9 of the 12."""
    kept = []
    for salt in range(12):
        preds = [" ".join(f"문장{i}{j}이다." for j in range(21)) for i in range(60)]
        refs = [["요약이다."] for _ in preds]
        caps = [LengthCap(max_sentences=k) for k in range(1, 21)]
        _, cap, _ = ablate(preds, refs, [], _noise_score(salt), caps)
        kept.append(cap is not None)
    assert sum(kept) <= 2, kept


def _plain_one_se_keeps(by_cap, base, k=5, seeds=(0, 1, 2)) -> bool:
    """The rule before nested selection (reference): the cap best on the other folds, judged on the held-out fold,
    kept when that gain exceeds one standard error."""
    import numpy as np

    from dialsum.scoring.bootstrap import kfold, one_se_gain

    n = by_cap.shape[1]
    held = np.zeros(n)
    for s in seeds:
        for part in kfold(n, k, s):
            train = np.setdiff1d(np.arange(n), part)
            best = max(range(len(by_cap)), key=lambda c: (by_cap[c][train].mean(), -c))
            held[part] += by_cap[best][part] - base[part]
    return one_se_gain(held / len(seeds)).keep


def test_nested_selection_refuses_a_noise_cap_the_plain_rule_keeps_and_keeps_a_real_one():
    """12 caps whose per-row gains are pure noise (150 rows): on this draw the plain one-SE rule keeps the best of
    the grid; nested cross-validation (the whole selection inside each outer fold) refuses it. A cap with a real
    +0.6 gain per row among the same noise is kept."""
    import numpy as np

    from dialsum.postprocess.rules import nested_cap_choice
    from dialsum.scoring.bootstrap import one_se_gain

    base = np.zeros(150)
    noise = np.random.default_rng(14).normal(0, 1.0, size=(12, 150))
    assert _plain_one_se_keeps(noise, base)
    pick, outer = nested_cap_choice(noise, base)
    assert pick is None or not one_se_gain(outer).keep
    real = np.random.default_rng(0).normal(0, 1.0, size=(12, 150))
    real[5] += 0.6
    pick, outer = nested_cap_choice(real, base)
    assert pick == 5 and one_se_gain(outer).keep
