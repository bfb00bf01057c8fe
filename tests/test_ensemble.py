"""MBR selection (dialsum.ensemble): same picks as a naive rouge-score loop and as the pair-by-pair
definition (tests/oracle_mbr.py), deterministic ties, merged duplicates change nothing."""
from __future__ import annotations

import csv

import pytest
from rouge_score import rouge_scorer

from conftest import run_cli, shared_file
from dialsum.scoring.rouge import features
from dialsum.scoring.tokenize import get_tokenizer
from dialsum.ensemble import Voting, ensemble
from dialsum.ensemble.consensus import prepare
from oracle_mbr import definition_pick as oracle_pick

MECAB = get_tokenizer("mecab")


def mbr_select(texts, weights, feats, sem):
    """dialsum's rule on one dialogue, each candidate its own source with its own weight: (index, utility).
    (`feats` is unused: the rule tokenises and featurises the texts itself, as the commands do.)"""
    names = [f"s{i}" for i in range(len(texts))]
    [d] = prepare({"x": list(zip(texts, names))}, names, sem, "mecab")
    i, scores = Voting(tuple(float(w) for w in weights)).pick_scored(d)
    return i, float(scores[i])


class _Tok:
    def tokenize(self, text):
        return list(MECAB(text))


def naive_pick(texts):
    """Reference: rouge-score per pair, mean F of R1/R2/RL against every other candidate; the earliest within 1e-9
    of the maximum wins."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tok())
    utils = []
    for i, h in enumerate(texts):
        us = []
        for j, r in enumerate(texts):
            if i != j:
                s = scorer.score(r, h)
                us.append((s["rouge1"].fmeasure + s["rouge2"].fmeasure + s["rougeL"].fmeasure) / 3)
        utils.append(sum(us) / len(us))
    return next(i for i, u in enumerate(utils) if u >= max(utils) - 1e-9)


def load_peers(n_files):
    d = shared_file("ko/peer_test_predictions")
    tables = []
    for p in sorted(d.glob("*.csv"))[:n_files + 1]:
        if p.name == "MANIFEST.csv":
            continue
        with open(p, encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        key = "fname" if "fname" in rows[0] else "id"
        tables.append((p.stem, {r[key]: r["summary"] for r in rows}))
    return tables[:n_files]


def test_picks_equal_naive_rouge_score_loop_on_real_systems():
    tables = load_peers(12)
    names = list(tables[0][1])[:40]
    groups = {f: [(t[f], name) for name, t in tables] for f in names}
    picks = ensemble(groups, "rouge-score").picks
    for f in names:
        texts = [t for t, _ in groups[f]]
        assert picks[f].text == texts[naive_pick(texts)]


def test_ties_go_to_the_earliest_and_duplicates_merge_without_changing_the_choice():
    sem = "rouge-score"
    texts = ["가 나 다", "라 마 바", "가 나 다 라", "라 마 바 사"]
    feats = [features(MECAB(t), sem) for t in texts]
    i, _ = mbr_select(texts, [1.0] * 4, feats, sem)
    assert i == naive_pick(texts)
    # symmetric pair: exact tie -> earliest
    two = ["가 나", "다 라"]
    assert mbr_select(two, [1, 1], [features(MECAB(t), sem) for t in two], sem)[0] == 0
    # duplicates: consensus candidate repeated; picks equal the naive loop over the unmerged list
    dup = ["민수는 병원에 간다.", "민수는 집에 간다.", "민수는 집에 간다.", "지현은 학교에 온다."]
    feats = [features(MECAB(t), sem) for t in dup]
    assert mbr_select(dup, [1.0] * 4, feats, sem)[0] == naive_pick(dup) == 1


def test_weights_shift_the_choice():
    sem = "pltrdy"
    texts = ["민수는 병원에 간다.", "민수는 병원에 간다고 한다.", "지현은 학교에 온다.", "지현은 학교에 간다."]
    feats = [features(MECAB(t), sem) for t in texts]
    plain = mbr_select(texts, [1, 1, 1, 1], feats, sem)[0]
    heavy = mbr_select(texts, [5, 5, 0.01, 0.01], feats, sem)[0]
    assert plain in (2, 3) and heavy in (0, 1)


def test_ensemble_cli_on_submission_files(tmp_path):
    d = shared_file("ko/peer_test_predictions")
    files = [d / "AIBootcamp16_nlp-3__output_baseline.csv", d / "AIBootcamp14_nlp-1__submission_exp7a.csv",
             d / "AIBootcamp14_nlp-1__20251013_205042_strategy6_kobart_solar_api.csv"]  # the last uses `id`
    out = tmp_path / "sel.csv"
    r = run_cli("ensemble", "--candidates", *map(str, files), "--out", str(out), "--semantics", "rouge-score")
    assert r.returncode == 0, r.stderr
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 499 and all(x["summary"] for x in rows)
    assert {x["source"] for x in rows} <= {p.stem for p in files}


def definition_pick(texts, weights, sem):
    return oracle_pick(texts, weights, [features(MECAB(t), sem) for t in texts])


@pytest.mark.parametrize("sem", ["pltrdy", "rouge-score"])
def test_weighted_duplicates_follow_the_definition_for_every_copy(sem):
    """Weights [5,1,3,3,1,5] over [a,b,c,b,a,c]: the copies of one text leave out different own weights."""
    a, b, c = "민수는 내일 병원에 간다.", "민수는 내일 학교에 간다.", "지현은 오늘 병원에 왔다."
    texts, weights = [a, b, c, b, a, c], [5, 1, 3, 3, 1, 5]
    feats = [features(MECAB(t), sem) for t in texts]
    got = mbr_select(texts, weights, feats, sem)
    want = definition_pick(texts, weights, sem)
    assert got[0] == want[0] and got[1] == pytest.approx(want[1], abs=1e-12)
    # and it does not depend on where the heavier copy sits
    for perm in ([1, 0, 2, 3, 4, 5], [4, 3, 5, 0, 1, 2], [5, 4, 3, 2, 1, 0]):
        t2, w2 = [texts[i] for i in perm], [weights[i] for i in perm]
        got2 = mbr_select(t2, w2, [features(MECAB(t), sem) for t in t2], sem)
        assert got2[0] == definition_pick(t2, w2, sem)[0]
        assert got2[1] == pytest.approx(want[1], abs=1e-12)
