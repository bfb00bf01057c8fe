"""`dialsum score`, `dialsum compare` and `dialsum submit`: the leaderboard metric of a predictions file, whether one
file (or run) is really better than another, and a validated submission."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions, read_split_table
from dialsum.io.references import read_references
from dialsum.io.submission import write_submission
from dialsum.scoring import bootstrap
from dialsum.scoring.metric import Metric


def score(args) -> int:
    preds = read_predictions(Path(args.pred))
    refs = read_references(Path(args.refs))
    missing = [f for f in refs if f not in preds]
    extra = [f for f in preds if f not in refs]
    if missing or (extra and not args.subset):
        hint = ("; --subset scores only the fnames of --refs" if extra and not missing else "")
        raise DialsumError(f"{args.pred}: fnames differ from {args.refs}: missing {missing[:5]} extra {extra[:5]}"
                           f" ({len(missing)} missing, {len(extra)} extra){hint}")
    names = list(refs)
    empty = [f for f in names if not preds[f].strip()]
    if empty:
        print(f"warning: {len(empty)} empty/NaN prediction(s) score 0, e.g. {empty[:3]}", file=sys.stderr)
    s = Metric(args.semantics, args.tokenizer).score([preds[f] for f in names], [refs[f] for f in names])
    if args.json:
        print(json.dumps(s.as_dict()))
    else:
        print(f"ROUGE-1 {s.rouge1:.4f}  ROUGE-2 {s.rouge2:.4f}  ROUGE-L {s.rougeL:.4f}  final {s.final:.4f}")
    return 0


def submit(args) -> int:
    preds = read_predictions(Path(args.pred))
    print(write_submission(Path(args.out_dir), args.run_id, Path(args.sample_submission), preds))
    return 0


def _run_dev_report(run_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """A finished run's post-processed dev outputs and its dev-report references."""
    man, refs = run_dir / "manifest.json", run_dir / "dev_report.csv"
    try:
        final = json.loads(man.read_text(encoding="utf-8"))["stages"]["postprocess"]["result"]["final"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DialsumError(f"{run_dir}: not a finished dialsum run (no postprocess stage in manifest.json)") from None
    if not refs.is_file():
        raise DialsumError(f"{run_dir}: no dev_report.csv")
    dev = {f: text for f, (text, _) in read_split_table(Path(final)).get("dev", {}).items()}
    return dev, read_references(refs)


def compare(args) -> int:
    """Paired bootstrap of A - B over the same dialogues, with a sign-flip permutation p-value."""
    a, b = Path(args.a), Path(args.b)
    if a.is_dir() or b.is_dir():
        if not (a.is_dir() and b.is_dir()):
            raise DialsumError(f"compare two prediction CSVs or two run folders, not one of each ({a}, {b})")
        (pa, refs), (pb, refs_b) = _run_dev_report(a), _run_dev_report(b)
        if list(refs) != list(refs_b):
            raise DialsumError(f"{a} and {b} have different dev-report rows (different data or dev_split): "
                               f"their scores are not paired")
        if args.refs:
            refs = {f: r for f, r in read_references(Path(args.refs)).items() if f in refs}
    else:
        if not args.refs:
            raise DialsumError("--refs is needed to compare two prediction files (fname + summary or summary1..K)")
        pa, pb, refs = read_predictions(a), read_predictions(b), read_references(Path(args.refs))
    for path, preds in ((a, pa), (b, pb)):
        missing = [f for f in refs if f not in preds]
        if missing:
            raise DialsumError(f"{path}: no prediction for {len(missing)} reference fname(s), e.g. {missing[:3]}")
    if args.samples < 1:
        raise DialsumError("--samples must be at least 1")
    names = list(refs)
    rows = Metric(args.semantics, args.tokenizer).rows
    c = bootstrap.compare(rows([pa[f] for f in names], [refs[f] for f in names]),
                          rows([pb[f] for f in names], [refs[f] for f in names]), args.samples, args.seed)
    if args.json:
        print(json.dumps(c.as_dict()))
        return 0
    print(f"A {c.a:.4f}  {a}")
    print(f"B {c.b:.4f}  {b}")
    print(f"A - B {c.diff:+.4f}, 95 % interval [{c.ci_low:+.4f}, {c.ci_high:+.4f}] (paired bootstrap, "
          f"{args.samples} resamples of {c.n} dialogues), permutation p = {c.p_value:.4f}")
    verdict = ("A is better" if c.ci_low > 0 else "B is better" if c.ci_high < 0
               else "no difference these dialogues can show: keep the simpler or the one you trust more")
    print(f"verdict: {verdict}")
    return 0
