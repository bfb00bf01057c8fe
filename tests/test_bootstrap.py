"""Uncertainty of dev numbers: bootstrap intervals over dialogues equal rescoring resampled texts, a system against
itself is [0, 0] with p = 1, and `dialsum compare` through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli, shared_file
from dialsum.io.candidates import read_predictions
from dialsum.io.references import read_references
from dialsum.scoring import bootstrap
from dialsum.scoring.metric import Metric, score_corpus

METRIC = {"semantics": "pltrdy", "tokenizer": "mecab"}
SYSTEMS = ("YongJae-AI__251204002_kot5-kb-dec96-gacc2_dev_full.csv",
           "AIBootcamp13_nlp_5__val_solar_results_filtered__summary_solar.csv")


def small_case(n=12):
    refs = read_references(shared_file("ko/dev_200.csv"))
    names = list(refs)[:n]
    a, b = (read_predictions(shared_file(f"ko/dev_200_predictions/{s}")) for s in SYSTEMS)
    return [a[f] for f in names], [b[f] for f in names], [refs[f] for f in names]


def test_intervals_equal_a_slow_loop_that_rescores_the_resampled_texts():
    """The fast path resamples per-dialogue scores; the reference rescores each resample's texts from scratch with
    the corpus metric. Same seed, same resamples: the same percentiles."""
    a, b, refs = small_case()
    samples, seed = 300, 7
    idx = bootstrap.resample_indices(len(a), samples, seed)
    slow_a = [score_corpus([a[i] for i in row], [refs[i] for i in row]).final for row in idx]
    slow_d = [score_corpus([a[i] for i in row], [refs[i] for i in row]).final
              - score_corpus([b[i] for i in row], [refs[i] for i in row]).final for row in idx]
    rows = Metric.of(METRIC).rows
    ra, rb = rows(a, refs), rows(b, refs)
    assert bootstrap.interval(ra, samples, seed) == pytest.approx(tuple(np.percentile(slow_a, [2.5, 97.5])), abs=1e-9)
    c = bootstrap.compare(ra, rb, samples, seed)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(np.percentile(slow_d, [2.5, 97.5])), abs=1e-9)
    assert c.a == pytest.approx(score_corpus(a, refs).final, abs=1e-9)
    assert c.diff == pytest.approx(score_corpus(a, refs).final - score_corpus(b, refs).final, abs=1e-9)


def test_a_system_against_itself_is_zero_with_p_one_and_a_clear_gap_is_significant():
    a, _, refs = small_case(40)
    ra = Metric.of(METRIC).rows(a, refs)
    c = bootstrap.compare(ra, ra)
    assert (c.diff, c.ci_low, c.ci_high, c.p_value, c.n) == (0.0, 0.0, 0.0, 1.0, 40)
    shifted = [x - 5.0 for x in ra]  # every dialogue 5 points worse: the smallest p the test can give
    c = bootstrap.compare(ra, shifted, 2000, 1)
    assert c.diff == pytest.approx(5.0) and c.ci_low == pytest.approx(5.0) and c.p_value == pytest.approx(1 / 2001)


def test_compare_cli_on_files(tmp_path):
    refs = shared_file("ko/dev_200.csv")
    a, b = (shared_file(f"ko/dev_200_predictions/{s}") for s in SYSTEMS)
    r = run_cli("compare", str(a), str(a), "--refs", str(refs), "--json")
    assert r.returncode == 0, r.stderr
    same = json.loads(r.stdout)
    assert set(same) == {"a", "b", "diff", "ci_low", "ci_high", "p_value", "n"}
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"], same["n"]) == (0.0, 0.0, 0.0, 1.0, 200)
    r = run_cli("compare", str(a), str(b), "--refs", str(refs), "--json", "--samples", "2000", "--seed", "3")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    score = {p: json.loads(run_cli("score", "--pred", str(p), "--refs", str(refs), "--json").stdout)["final"]
             for p in (a, b)}
    assert got["a"] == pytest.approx(score[a], abs=1e-9) and got["b"] == pytest.approx(score[b], abs=1e-9)
    assert got["ci_low"] <= got["diff"] <= got["ci_high"] and got["ci_low"] > 0  # a 17-point gap is no noise
    r = run_cli("compare", str(a), str(b), "--refs", str(refs))
    assert r.returncode == 0 and "verdict: A is better" in r.stdout
    r = run_cli("compare", str(a), str(b))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--refs" in r.stderr


def test_resamples_draw_dialogues_with_replacement_and_intervals_have_the_width_of_the_noise():
    """A bootstrap resample draws n dialogues *with* replacement: most contain repeats, and the interval of a mean
    spans about 2 x 1.96 x sd / sqrt(n) (the normal approximation of the same sampling noise). Without replacement
    every resample is a permutation and every interval collapses to the mean itself."""
    a, _, refs = small_case(200)
    ra = np.asarray(Metric.of(METRIC).rows(a, refs))
    idx = bootstrap.resample_indices(len(ra), 2000, 0)
    repeats = np.mean([len(set(row.tolist())) < len(row) for row in idx])
    distinct = np.mean([len(set(row.tolist())) for row in idx]) / len(ra)
    assert repeats == 1.0 and distinct == pytest.approx(1 - np.exp(-1), abs=0.02)  # ~63 % distinct per resample
    low, high = bootstrap.interval(ra, 10000, 0)
    expect = 2 * 1.96 * ra.std(ddof=1) / np.sqrt(len(ra))
    assert high - low == pytest.approx(expect, rel=0.1) and low < ra.mean() < high
