"""The fitted consensus on real systems: it beats its best member and the uniform consensus on held-out rows, it
learns only from the fnames it is given, and the vectorised selection equals the reference MBR."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli, shared_file
from oracle_mbr import ensemble as oracle_ensemble
from dialsum.ensemble import ensemble
from dialsum.ensemble.consensus import cross_validate, prepare


def dev_pool():
    d = shared_file("ko/dev_200_predictions")
    files = sorted(p for p in d.glob("*.csv") if p.name != "MANIFEST.csv")
    assert len(files) == 12
    refs_path = shared_file("ko/dev_200.csv")
    with open(refs_path, encoding="utf-8-sig") as f:
        refs = {r["fname"]: [" ".join(r["summary"].split())] for r in csv.DictReader(f)}
    tables = []
    for p in files:
        with open(p, encoding="utf-8-sig") as f:
            tables.append((p.stem, {r["fname"]: r["summary"] for r in csv.DictReader(f)}))
    return files, refs_path, refs, tables


@pytest.fixture(scope="module")
def pool():
    return dev_pool()


def test_fitted_consensus_beats_best_single_and_uniform_on_held_out_folds(pool):
    files, _, refs, tables = pool
    groups = {f: [(t[f], n) for n, t in tables] for f in refs}
    dialogues = prepare(groups, [n for n, _ in tables], "pltrdy", refs=refs)
    cv = cross_validate(dialogues, len(tables), k=5, seeds=(0,))
    assert cv["rows"] == 200
    assert cv["fitted"] > cv["best_single"] + 0.5
    assert cv["fitted"] > cv["uniform"]
    assert cv["oracle"] > cv["fitted"]


def test_cli_fit_refs_learns_only_from_the_given_fnames(pool, tmp_path):
    files, refs_path, refs, tables = pool
    half = tmp_path / "refs_half.csv"
    names = list(refs)[:100]
    with open(half, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["fname", "summary"], *[[n, refs[n][0]] for n in names]])
    r = run_cli("ensemble", "--candidates", *map(str, files), "--fit-refs", str(half), "--out", str(tmp_path / "a.csv"),
                "--report", str(tmp_path / "a.json"), "--scores", str(tmp_path / "all.csv"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5-fold CV on the fitting rows" in r.stdout and "method used:" in r.stdout
    assert r.stdout.startswith("members (12): ")  # every member named, none cut short
    rep_a = json.loads((tmp_path / "a.json").read_text())
    assert set(rep_a["source_quality"]) == {p.stem for p in files}
    assert rep_a["method"] in ("fitted consensus", "uniform consensus", "best single source")
    # the other 100 rows' candidates change (here: vanish); the fitted choices may not
    cut = tmp_path / "cut"
    cut.mkdir()
    for p, (name, t) in zip(files, tables):
        with open(cut / p.name, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows([["fname", "summary"], *[[n, t[n]] for n in names]])
    r = run_cli("ensemble", "--candidates", *map(str, sorted(cut.iterdir())), "--fit-refs", str(half),
                "--out", str(tmp_path / "b.csv"), "--report", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "b.json").read_text()) == rep_a
    with open(tmp_path / "a.csv", encoding="utf-8") as f:
        a = {x["fname"]: x["summary"] for x in csv.DictReader(f)}
    with open(tmp_path / "b.csv", encoding="utf-8") as f:
        b = {x["fname"]: x["summary"] for x in csv.DictReader(f)}
    assert len(a) == 200 and len(b) == 100 and all(a[n] == b[n] for n in names)
    # --scores: every candidate, one chosen per fname, the chosen one scores highest among members, text verbatim
    with open(tmp_path / "all.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 * 12
    for fname in names[:20]:
        mine = [x for x in rows if x["fname"] == fname]
        chosen = [x for x in mine if x["chosen"] == "1"]
        assert len(chosen) == 1 and chosen[0]["text"] == a[fname]
        scored = [float(x["utility"]) for x in mine if x["utility"]]
        assert float(chosen[0]["utility"]) >= max(scored) - 1e-9
        assert chosen[0]["text"] == dict(tables)[chosen[0]["source"]][fname]  # verbatim, not re-spaced


@pytest.mark.parametrize("sem", ["pltrdy", "rouge-score"])
def test_vectorised_selection_equals_the_reference_mbr_on_real_systems(sem):
    d = shared_file("ko/peer_test_predictions")
    tables = []
    for p in sorted(x for x in d.glob("*.csv") if x.name != "MANIFEST.csv"):
        with open(p, encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        key = "fname" if "fname" in rows[0] else "id"
        tables.append((p.stem, {r[key]: r["summary"] for r in rows}))
    names = list(tables[0][1])[:120]
    groups = {f: [(t[f], n) for n, t in tables if f in t] for f in names}
    ref = oracle_ensemble(groups, sem)
    got = ensemble(groups, sem).picks
    assert [got[f].text for f in names] == [ref[f].text for f in names]
    assert [got[f].source for f in names] == [ref[f].source for f in names]


def test_fixed_weights_are_guarded_like_a_fit(pool):
    """Weights given (e.g. by a tuning study) are not refitted but judged by the same k-fold one-SE rule: weights
    that amount to the weakest system fall back; weights spread over every system survive as a weighted consensus
    only if the held-out folds support them."""
    files, _, refs, tables = pool
    groups = {f: [(t[f], n) for n, t in tables] for f in refs}
    names = [n for n, _ in tables]
    plain = ensemble(groups, "pltrdy", fit_refs=refs).report
    quality = plain["source_quality"]
    worst = min(quality, key=quality.get)
    only_worst = {n: (1.0 if n == worst else 0.0) for n in names}
    res = ensemble(groups, "pltrdy", fit_refs=refs, weights=only_worst, guard=True)
    rep = res.report
    assert rep["method"] in ("best single source", "uniform consensus") and "one-standard-error" in rep["chosen_by"]
    assert rep["cross_validation"]["fitted"] < rep["cross_validation"]["best_single"] - 5  # the weakest system
    assert rep["params"] == {"fixed_weights": True}
    # without the guard the same weights are taken as given
    res2 = ensemble(groups, "pltrdy", fit_refs=None, weights=only_worst)
    rep2, rule2 = res2.report, res2.voting
    assert rep2 is None and rule2.weights == tuple(only_worst[n] for n in names)


def _noise_pool(seed: int, n: int = 200, sources: int = 12):
    """Dialogues whose candidates' true scores are independent draws: no source is better than another, and the
    consensus utilities say nothing about quality. Any rule's expected held-out score is 50."""
    import numpy as np

    from dialsum.ensemble import CandidateSet

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        u = rng.uniform(0, 1, (sources, sources))
        u = (u + u.T) / 2
        np.fill_diagonal(u, 1.0)
        out.append(CandidateSet(f"d{i}", [f"t{i}_{j}" for j in range(sources)], np.arange(sources), u,
                                rng.uniform(0, 1, sources)))
    return out


def test_the_k_fold_estimate_shows_no_gain_where_sources_differ_only_by_noise():
    """Fitted on the other folds only, the fit cannot look better than chance on the held-out fold: over six such
    pools (120 dialogues, 8 sources, 4 folds) its held-out mean is 49.2 (expected 50). A fit that also saw the
    held-out fold picks the luckiest members and reports 54.0, every pool above 52.5."""
    import numpy as np

    cvs = [cross_validate(_noise_pool(seed, n=120, sources=8), 8, k=4, seeds=(0,)) for seed in range(6)]
    assert np.mean([cv["fitted"] for cv in cvs]) < 52.0
