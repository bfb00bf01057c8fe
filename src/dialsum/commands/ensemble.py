"""`dialsum ensemble`: one candidate per dialogue chosen among candidate files (or a run folder's candidates), the
voting fitted on a references file only when asked. Pure over CSVs: the engine is imported only for a run folder."""
from __future__ import annotations

import sys
from pathlib import Path

from dialsum.ensemble import SCORE_COLUMNS, ensemble as choose, score_rows
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions, read_split_table, read_store
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.io.references import read_references


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
    res = choose(groups, args.semantics, args.tokenizer, refs, _parse_weights(args.weights), utility=args.utility,
                 workers=args.workers, guard=bool(args.weights))
    rows = [[f, res.picks[f].text, res.picks[f].source] for f in order if f in res.picks]
    if res.report is not None:
        _print_fit(res.report)
        if args.report:
            atomic_write_json(Path(args.report), res.report)
    if args.scores:
        atomic_write_text(Path(args.scores), csv_text(SCORE_COLUMNS, score_rows(res)))
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
    from dialsum.engine.run_folder import reopen_run
    from dialsum.stages import ensemble as stage
    from dialsum.stages.pipeline import engine_for

    ctx = reopen_run(run_dir)
    result = engine_for(ctx).run(stage.plan_of_run(ctx))
    table = read_split_table(Path(result["picks"]))
    splits = ["dev", "test"] if args.split == "all" else [args.split]
    rows = [[f, text, src] for sp in splits for f, (text, src) in table.get(sp, {}).items()]
    atomic_write_text(Path(args.out), csv_text(["fname", "summary", "source"], rows))
    e = result["ensemble"]
    print(f"ensemble over {result['n_sources']} sources: dev-select {e['select']['final']:.4f}, dev-report "
          f"{e['report']['final']:.4f}; chosen: {result['chosen']}")
    print(f"{args.out}: {len(rows)} selections ({'+'.join(splits)}); fit on {run_dir / 'dev_select.csv'}")
    return 0


