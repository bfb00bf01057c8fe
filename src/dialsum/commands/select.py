"""`dialsum ensemble` and `dialsum postprocess`: choosing among candidate files (or a run folder's candidates) and
post-processing predictions, with fits on a references file only when asked."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dialsum.engine.graph import ensemble_stage_of_run
from dialsum.engine.pipeline import engine_for
from dialsum.engine.runs import reopen_run
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions, read_split_table, read_store
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.io.references import read_references
from dialsum.scoring.metric import metric_rows
from dialsum.selection.consensus import SCORE_COLUMNS, score_rows, select
from dialsum.selection.postprocess import FittedPostprocess, LengthCap, PostProcessor, RULES


def _parse_weights(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        k, _, v = item.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise DialsumError(f"--weights: expected source=number, got {item!r}") from None
    return out


def ensemble(args) -> int:
    sources = [Path(p) for p in args.candidates]
    if len(sources) == 1 and (sources[0] / "manifest.json").is_file():
        return _ensemble_run_dir(args, sources[0])

    groups: dict[str, list[tuple[str, str]]] = {}
    order: list[str] = []
    if len(sources) == 1 and sources[0].is_dir():
        for c in read_store(sources[0], None if args.split == "all" else args.split):
            if c.fname not in groups:
                order.append(c.fname)
            groups.setdefault(c.fname, []).append((c.text, c.source))
    else:
        names = [p.stem for p in sources]
        if len(set(names)) != len(names):
            raise DialsumError(f"--candidates: two files share a name stem ({names}); sources are named by stem")
        tables = [(p.stem, read_predictions(p)) for p in sources]
        order = list(dict.fromkeys(f for _, t in tables for f in t))
        for f in order:
            groups[f] = [(t[f], name) for name, t in tables if f in t]
            if len(groups[f]) < len(tables):
                print(f"warning: {f}: only {len(groups[f])} of {len(tables)} sources have a candidate", file=sys.stderr)
    refs = None
    if args.fit_refs:
        refs = read_references(Path(args.fit_refs))
        if not set(refs) & set(groups):
            raise DialsumError(f"{args.fit_refs}: no fname in common with the candidates")
    picks, report, dialogues, names, rule = select(groups, args.semantics, args.tokenizer, refs,
                                                   _parse_weights(args.weights), utility=args.utility,
                                                   workers=args.workers, guard=bool(args.weights))
    rows = [[f, picks[f].text, picks[f].source] for f in order if f in picks]
    if report is not None:
        _print_fit(report)
        if args.report:
            atomic_write_json(Path(args.report), report)
    if args.scores:
        atomic_write_text(Path(args.scores), csv_text(SCORE_COLUMNS, score_rows(dialogues, names, picks, rule)))
    atomic_write_text(Path(args.out), csv_text(["fname", "summary", "source"], rows))
    print(f"{args.out}: {len(rows)} selections")
    return 0


def _print_fit(report: dict) -> None:
    cv = report.get("cross_validation")
    print(f"{'source':<60}{'quality':>9}{'weight':>8}{'prior':>8}")
    for src, q in sorted(report["source_quality"].items(), key=lambda kv: -kv[1]):
        w = report["members"].get(src, 0.0)
        print(f"{src[:59]:<60}{q:9.3f}{w:8.3f}{report['prior'].get(src, 0.0):+8.3f}")
    print(f"method: {report['method']}, beta {report['beta']:g}, params {report['params']}; fitting rows: fitted "
          f"{report['fit_rows_score']:.3f}, best single {report['fit_rows_best_single']['score']:.3f} "
          f"({report['fit_rows_best_single']['source']}), uniform {report['fit_rows_uniform']:.3f}")
    if cv:
        print(f"{cv['folds']}-fold CV on the fitting rows (held-out folds): fitted {cv['fitted']:.3f}, best single "
              f"{cv['best_single']:.3f}, uniform {cv['uniform']:.3f}, oracle {cv['oracle']:.3f}")


def _ensemble_run_dir(args, run_dir: Path) -> int:
    """`dialsum ensemble --candidates runs/<id>`: the run's own ensemble stage (fitted on its dev-select), cached."""

    ctx = reopen_run(run_dir)
    eng = engine_for(ctx)
    result = eng.run(ensemble_stage_of_run(ctx))
    table = read_split_table(Path(result["picks"]))
    splits = ["dev", "test"] if args.split == "all" else [args.split]
    rows = [[f, text, src] for sp in splits for f, (text, src) in table.get(sp, {}).items()]
    atomic_write_text(Path(args.out), csv_text(["fname", "summary", "source"], rows))
    e = result["ensemble"]
    print(f"ensemble over {result['n_sources']} sources: dev-select {e['select']['final']:.4f}, dev-report "
          f"{e['report']['final']:.4f}; chosen: {result['chosen']}")
    print(f"{args.out}: {len(rows)} selections ({'+'.join(splits)}); fit on {run_dir / 'dev_select.csv'}")
    return 0


def postprocess(args) -> int:
    preds = read_predictions(Path(args.pred))
    rules = args.rules.split(",") if args.rules else list(RULES)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise DialsumError(f"--rules: unknown rule(s) {unknown} (known: {', '.join(RULES)})")
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
                          metric_rows({"semantics": args.semantics, "tokenizer": "mecab"}))
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
