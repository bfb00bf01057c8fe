"""Fitted consensus vs its baselines on the 12 real systems' predictions for the 200 shared dev rows, k-fold CV.

Every number is on rows the choosing never saw: each fold fits on the other folds (best single source by quality,
the fitted rule) and is judged on itself. Run: .venv/bin/python bench/bench_ensemble_fit.py [--semantics pltrdy]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from dialsum.ensemble.consensus import cross_validate, fit, prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ko"


def load():
    files = sorted(p for p in (SHARED / "dev_200_predictions").glob("*.csv") if p.name != "MANIFEST.csv")
    tables = []
    for p in files:
        with open(p, encoding="utf-8-sig") as f:
            tables.append((p.stem, {r["fname"]: r["summary"] for r in csv.DictReader(f)}))
    with open(SHARED / "dev_200.csv", encoding="utf-8-sig") as f:
        refs = {r["fname"]: [" ".join(r["summary"].split())] for r in csv.DictReader(f)}
    groups = {fn: [(t.get(fn, ""), name) for name, t in tables] for fn in refs}
    return [n for n, _ in tables], groups, refs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--semantics", nargs="+", default=["pltrdy", "rouge-score"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sources, groups, refs = load()
    for sem in args.semantics:
        t0 = time.perf_counter()
        dialogues = prepare(groups, sources, sem, refs=refs)
        t_prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        cv = cross_validate(dialogues, len(sources), args.folds, tuple(range(args.repeats)))
        t_cv = time.perf_counter() - t0
        whole = fit(dialogues, len(sources))
        cv.pop("per_row")
        print(json.dumps({"semantics": sem, **{k: round(v, 3) if isinstance(v, float) else v for k, v in cv.items()},
                          "fit_on_all_200": whole.params | {"score": round(whole.fit_score, 3)},
                          "seconds": {"prepare": round(t_prep, 2), "cv": round(t_cv, 2)}}, ensure_ascii=False))


if __name__ == "__main__":
    main()
