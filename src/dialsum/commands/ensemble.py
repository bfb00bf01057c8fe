"""`dialsum ensemble`: one candidate per dialogue chosen among candidate files (or a run folder's candidates), the
voting fitted on a references file only when asked. Pure over CSVs: the engine is imported only for a run folder."""
from __future__ import annotations

import sys
from pathlib import Path

from dialsum.ensemble import SCORE_COLUMNS, ensemble as choose, score_rows
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_predictions, read_split_table, read_store, run_parts
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


def unique_names(paths: list[tuple[str, ...]], least: list[int]) -> list[str]:
    """For each source's name parts (most specific last), the shortest unique `/`-joined suffix of at least
    least[i] parts: `tiny/greedy`, or `run-a/tiny/greedy` where two runs both have it; `sys`, or `a/sys`."""
    out = []
    for parts, k in zip(paths, least):
        n = k
        while n < len(parts) and sum(1 for q in paths if q[-n:] == parts[-n:]) > 1:
            n += 1
        out.append("/".join(parts[-n:]))
    return out


def _members(sources: list[Path], split: str) -> tuple[dict[str, list[tuple[str, str]]], list[str], list[Path]]:
    """(fname -> [(text, source name)], fnames in first-seen order, the run folders among the sources) from run
    folders (their candidates), candidate stores and part files (sources model/decoding) and prediction CSVs
    (fname, summary: one source each, named by file)."""
    from dialsum.io.candidates import COLUMNS, read_part
    from dialsum.io.data import read_table

    items: list[tuple[tuple[str, ...], int, str, str]] = []  # (name parts, least parts, fname, text)
    runs = []
    for src in sources:
        if src.is_dir() and (src / "manifest.json").is_file():
            runs.append(src)
            cands = [c for part in run_parts(src) for c in read_part(Path(part))]
            label: tuple[str, ...] = (src.resolve().name,)
        elif src.is_dir():
            cands = read_store(src)
            label = (src.resolve().name,)
        elif set(COLUMNS) <= set(read_table(src)[0]):  # a run's own candidate part
            cands = read_part(src)
            label = (src.resolve().parent.name,)
        else:
            parts = tuple(src.resolve().with_suffix("").parts)
            items += [(parts, 1, f, t) for f, t in read_predictions(src).items()]
            continue
        items += [(label + tuple(c.source.split("/")), 2, c.fname, c.text) for c in cands
                  if split == "all" or c.split == split]
    keys = list(dict.fromkeys((parts, least) for parts, least, _, _ in items))
    names = dict(zip(keys, unique_names([k[0] for k in keys], [k[1] for k in keys])))
    groups: dict[str, list[tuple[str, str]]] = {}
    for parts, least, fname, text in items:
        groups.setdefault(fname, []).append((text, names[(parts, least)]))
    return groups, list(groups), runs


def ensemble(args) -> int:
    sources = [Path(p) for p in args.candidates]
    if len(sources) == 1 and (sources[0] / "manifest.json").is_file():
        return _ensemble_run_dir(args, sources[0])
    groups, order, runs = _members(sources, args.split)
    members = list(dict.fromkeys(s for c in groups.values() for _, s in c))
    counts = {m: sum(1 for c in groups.values() if any(s == m for _, s in c)) for m in members}
    for f, c in groups.items():
        if len({s for _, s in c}) < len(members) and not runs:
            print(f"warning: {f}: only {len({s for _, s in c})} of {len(members)} sources have a candidate",
                  file=sys.stderr)
    print(f"members ({len(members)}): " + ", ".join(f"{m} ({counts[m]} dialogues)" for m in members))
    fit_refs = args.fit_refs or (runs[0] / "dev_select.csv" if runs else None)
    refs = None
    if fit_refs:
        refs = read_references(Path(fit_refs))
        if not set(refs) & set(groups):
            raise DialsumError(f"{fit_refs}: no fname in common with the candidates")
        if not args.fit_refs:
            print(f"fitting on {fit_refs} (the run's dev-select rows; --fit-refs to choose others)")
    res = choose(groups, args.semantics, args.tokenizer, refs, _parse_weights(args.weights), utility=args.utility,
                 workers=args.workers, guard=bool(args.weights))
    rows = [[f, res.picks[f].text, res.picks[f].source] for f in order if f in res.picks]
    if res.report is not None:
        _print_fit(res.report, dict(zip(res.sources, res.voting.weights)), res.method.value)
        if args.report:
            atomic_write_json(Path(args.report), res.report)
    else:
        print(f"method: {res.method.value} (no references to fit on), weights " +
              ", ".join(f"{s}={w:g}" for s, w in zip(res.sources, res.voting.weights)))
    if args.scores:
        atomic_write_text(Path(args.scores), csv_text(SCORE_COLUMNS, score_rows(res)))
    atomic_write_text(Path(args.out), csv_text(["fname", "summary", "source"], rows))
    print(f"{args.out}: {len(rows)} selections")
    return 0


def _print_fit(report: dict, used: dict[str, float], method: str) -> None:
    """The fit's table with the weights the chosen voting really used (0 for a source outside it)."""
    cv = report.get("cross_validation")
    width = max([len("source"), *map(len, report["source_quality"])]) + 2
    print(f"{'source':<{width}}{'quality':>9}{'fitted':>8}{'used':>8}{'prior':>8}")
    for src, q in sorted(report["source_quality"].items(), key=lambda kv: -kv[1]):
        print(f"{src:<{width}}{q:9.3f}{report['members'].get(src, 0.0):8.3f}{used.get(src, 0.0):8.3f}"
              f"{report['prior'].get(src, 0.0):+8.3f}")
    print(f"method used: {method} (chosen by {report['chosen_by']}); the fit: beta {report['beta']:g}, params "
          f"{report['params']}; fitting rows: fitted {report['fit_rows_score']:.3f}, best single "
          f"{report['fit_rows_best_single']['score']:.3f} ({report['fit_rows_best_single']['source']}), uniform "
          f"{report['fit_rows_uniform']:.3f}")
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


