"""Should the ensemble's choice be nested like the length cap's? Measured on the 12 real systems' predictions for the
200 shared dev rows: fit on 100 rows, judge on the 100 unseen ones (both directions, 8 seeded halvings).

    plain   the ensemble as it runs: the fitted rule's grid searched inside each fold of a 5-fold estimate, then the
            simplest of (best single, uniform, fitted) within one SE of the best held-out mean
    nested  the same, then the whole procedure re-run inside each of 5 outer folds and judged on the held-out fold
            against the best single source; anything but the best single kept only for an outer gain over one SE
    best    the best single source by quality on the fitting rows

Run: .venv/bin/python bench/ensemble_nested_holdout.py   (about 3 min on 2 cores)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble_fit import load  # noqa: E402

from dialsum.ensemble.consensus import Method, choose, cross_validate, fit, folds, prepare, single  # noqa: E402
from dialsum.scoring.bootstrap import one_se_gain  # noqa: E402


def procedure(rows, n: int, nested: bool):
    f = fit(rows, n)
    rule, method, _ = choose(f, cross_validate(rows, n, 5, (0,)), n)
    if nested and method is not Method.BEST_SINGLE:
        gains = []
        for held in folds(len(rows), 5, 0):
            inside = set(held.tolist())
            train = [x for i, x in enumerate(rows) if i not in inside]
            ff = fit(train, n)
            r, _, _ = choose(ff, cross_validate(train, n, 5, (0,)), n)
            bs = single(ff.best_single, n)
            gains += [100 * (rows[i].truth[r.pick(rows[i])] - rows[i].truth[bs.pick(rows[i])]) for i in held]
        if not one_se_gain(gains).keep:
            return single(f.best_single, n), "best single (nested)"
    return rule, method.value


def main() -> None:
    sources, groups, refs = load()
    d = prepare(groups, sources, "pltrdy", refs=refs)
    n = len(sources)
    scores = {"plain": [], "nested": [], "best": []}
    print("| seed | fit half | plain | nested | best single |\n|---:|---|---|---|---:|")
    for seed in range(8):
        perm = np.random.default_rng(seed).permutation(len(d))
        halves = [d[i] for i in perm[:100]], [d[i] for i in perm[100:]]
        for side, (fit_rows, test_rows) in enumerate((halves, halves[::-1])):
            row = {}
            for name in ("plain", "nested"):
                rule, how = procedure(fit_rows, n, name == "nested")
                row[name] = (100 * float(np.mean([x.truth[rule.pick(x)] for x in test_rows])), how)
            bs = single(fit(fit_rows, n).best_single, n)
            row["best"] = (100 * float(np.mean([x.truth[bs.pick(x)] for x in test_rows])), "")
            for k, v in row.items():
                scores[k].append(v[0])
            print(f"| {seed} | {'AB'[side]} | {row['plain'][0]:.3f} ({row['plain'][1]}) | {row['nested'][0]:.3f} "
                  f"({row['nested'][1]}) | {row['best'][0]:.3f} |", flush=True)
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    below = {k: sum(a < b - 1e-9 for a, b in zip(v, scores["best"])) for k, v in scores.items() if k != "best"}
    print(f"\nmean on unseen rows: plain {mean['plain']:.3f}, nested {mean['nested']:.3f}, best single "
          f"{mean['best']:.3f}; splits below the best single: plain {below['plain']}, nested {below['nested']} of "
          f"{len(scores['best'])}")


if __name__ == "__main__":
    main()
