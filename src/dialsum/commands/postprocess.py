"""`dialsum postprocess`: the post-processing rules applied to a predictions CSV, fitted (ablation, length cap) on a
references file only when asked. Pure over CSVs."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.io.references import read_references
from dialsum.postprocess import RULES, FittedPostprocess, LengthCap, PostProcessor, check_rules
from dialsum.scoring.metric import Metric


def postprocess(args) -> int:
    preds = read_predictions(Path(args.pred))
    rules = args.rules.split(",") if args.rules else list(RULES)
    try:
        check_rules(rules, "--rules")
    except ValueError as e:
        raise DialsumError(str(e)) from None
    cap = LengthCap(args.max_sentences, args.max_morphemes) if (args.max_sentences or args.max_morphemes) else None
    refs_path = args.fit_refs or args.refs
    if args.fitted:
        try:
            fitted = FittedPostprocess.from_dict(json.loads(Path(args.fitted).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise DialsumError(f"{args.fitted}: not a fitted post-processor ({e})") from None
    elif refs_path:
        refs = read_references(Path(refs_path))
        names = [f for f in refs if f in preds]
        if not names:
            raise DialsumError(f"{args.pred}: no fname in common with {refs_path}")
        proc = PostProcessor(tuple(rules), True, args.length_cap == "tune", cap, "mecab")
        fitted = proc.fit([preds[f] for f in names], [refs[f] for f in names],
                          Metric(args.semantics, "mecab").rows)
        print(f"{'rule':<34}{'on':>10}{'off':>10}{'delta':>10}{'gain':>10}{'se':>10}  enabled  why")
        for g in fitted.gains:
            print(f"{g.rule:<34}{g.on:10.4f}{g.off:10.4f}{g.delta:+10.4f}{g.gain:+10.4f}{g.se:10.4f}  "
                  f"{'yes' if g.enabled else 'no':<7}  {g.why}")
        print(f"enabled rules: {','.join(fitted.rules) or 'none'}; {fitted.cap or 'no length cap'} "
              f"(fitted on {len(names)} rows of {refs_path})")
    elif args.ablate:
        raise DialsumError("--ablate needs --refs (a CSV with fname and summary[1..K])")
    else:
        fitted = FittedPostprocess(tuple(rules), cap)
    if args.save_fit:
        atomic_write_json(Path(args.save_fit), fitted.to_dict())
    if args.out:
        rows = [[f, fitted.apply(t)] for f, t in preds.items()]
        atomic_write_text(Path(args.out), csv_text(["fname", "summary"], rows))
        print(f"{args.out}: {len(rows)} rows")
    return 0
