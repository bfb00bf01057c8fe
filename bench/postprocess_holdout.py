"""Does post-processing fitted on some dev rows hold on others? 12 real systems' dev predictions
(../shared/data/ko/dev_200_predictions, one reference each): the post-processor is fitted on rows 0-99 of each
system exactly as `dialsum postprocess --fit-refs` / the postprocess stage fit it (every rule, length-cap grid), then
both the raw and the processed predictions are scored on rows 100-199, which chose nothing.

Run: .venv/bin/python bench/postprocess_holdout.py [--semantics pltrdy] [--json out.json]
Prints one row per system (strongest first): raw and processed held-out scores, the change, what the fit kept.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dialsum.scoring.metric import Metric, score_corpus  # noqa: E402
from dialsum.postprocess import RULES, PostProcessor  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ko"


def read(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8-sig") as f:
        return {r["fname"]: r["summary"] for r in csv.DictReader(f)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--semantics", default="pltrdy", choices=["pltrdy", "rouge-score"])
    ap.add_argument("--json", help="also write the table as JSON")
    args = ap.parse_args()
    refs = read(DATA / "dev_200.csv")
    names = list(refs)
    fit_rows, held_rows = names[:100], names[100:200]
    scorer = lambda p, r: score_corpus(list(p), [list(x) for x in r], args.semantics).final  # noqa: E731
    per_row = Metric(args.semantics, "mecab").rows
    rows = []
    for path in sorted((DATA / "dev_200_predictions").glob("*.csv")):
        if path.name == "MANIFEST.csv":
            continue
        preds = read(path)
        proc = PostProcessor(tuple(RULES), True, True, None, "mecab")
        fitted = proc.fit([preds[f] for f in fit_rows], [[refs[f]] for f in fit_rows], per_row)
        held_refs = [[refs[f]] for f in held_rows]
        raw = scorer([preds[f] for f in held_rows], held_refs)
        post = scorer(fitted.apply_all([preds[f] for f in held_rows]), held_refs)
        rows.append({"system": path.stem, "raw": raw, "post": post, "change": post - raw,
                     "kept": fitted.describe()})
    rows.sort(key=lambda r: -r["raw"])
    print(f"{'system':<72}{'raw':>8}{'post':>8}{'change':>8}  kept")
    for r in rows:
        print(f"{r['system'][:71]:<72}{r['raw']:8.2f}{r['post']:8.2f}{r['change']:+8.2f}  {r['kept']}")
    changes = [r["change"] for r in rows]
    print(f"mean change over {len(rows)}: {sum(changes) / len(changes):+.3f}; worst among the 5 strongest: "
          f"{min(changes[:5]):+.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
