"""`dialsum score` and `dialsum submit`: the leaderboard metric of a predictions file, and a validated submission."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions
from dialsum.io.references import read_references
from dialsum.io.submission import write_submission
from dialsum.scoring.metric import score_corpus


def score(args) -> int:
    preds = read_predictions(Path(args.pred))
    refs = read_references(Path(args.refs))
    missing = [f for f in refs if f not in preds]
    extra = [f for f in preds if f not in refs]
    if missing or (extra and not args.subset):
        raise DialsumError(f"{args.pred}: fnames differ from {args.refs}: missing {missing[:5]} extra {extra[:5]}"
                           f" ({len(missing)} missing, {len(extra)} extra)")
    names = list(refs)
    empty = [f for f in names if not preds[f].strip()]
    if empty:
        print(f"warning: {len(empty)} empty/NaN prediction(s) score 0, e.g. {empty[:3]}", file=sys.stderr)
    s = score_corpus([preds[f] for f in names], [refs[f] for f in names], args.semantics, args.tokenizer)
    if args.json:
        print(json.dumps(s.as_dict()))
    else:
        print(f"ROUGE-1 {s.rouge1:.4f}  ROUGE-2 {s.rouge2:.4f}  ROUGE-L {s.rougeL:.4f}  final {s.final:.4f}")
    return 0


def submit(args) -> int:
    preds = read_predictions(Path(args.pred))
    print(write_submission(Path(args.out_dir), args.run_id, Path(args.sample_submission), preds))
    return 0
