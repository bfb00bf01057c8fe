"""Command line: `dialsum <stage>` for each stage, `dialsum run` for all of them.

Every command that touches a run folder goes through dialsum.pipeline, so `run` and the subcommands share stage
functions, keys and folder layout. Heavy libraries (torch, transformers, peft) are only imported inside stage
child processes, so `score`, `ensemble`, `postprocess` and `submit` start in well under a second.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.kinds import STAGE_KINDS

DEFAULT_CONFIG = "configs/default.yaml"


def _config(args):
    from dialsum.config import load_config

    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    if getattr(args, "submissions_dir", None):
        overrides["submissions_dir"] = str(Path(args.submissions_dir).resolve())
    return load_config(Path(args.config), overrides)


def cmd_run(args) -> int:
    from dialsum.pipeline import run_pipeline

    out = run_pipeline(_config(args), args.data_dir, args.run_id, args.backend, args.only_model, args.from_stage,
                       args.force)
    if out["submission"] is None:
        print(f"run: {out['run_dir']} (model stages only: {', '.join(args.only_model)})")
        return 0
    print(f"  {'stage':<12} {'dev-select':>10} {'dev-report':>10}  detail")
    for r in out["rows"]:
        sel = f"{r['select']['final']:10.4f}" if r.get("select") else f"{'-':>10}"
        rep = f"{r['report']['final']:10.4f}" if r.get("report") else f"{'-':>10}"
        print(f"  {r['stage']:<12} {sel} {rep}  {r['detail']}")
    print(f"run: {out['run_dir']}")
    print(f"report: {out['report']}")
    print(f"submission: {out['submission']}")
    return 0


def cmd_build_tiny_model(args) -> int:
    from dialsum.config import TinyModelSpec
    from dialsum.data import load_dialogues
    from dialsum.tiny_model import build_tiny_model

    rows = load_dialogues(Path(args.train), with_summary=True)
    spec = TinyModelSpec(pretrain_steps=args.pretrain_steps) if args.pretrain_steps is not None else TinyModelSpec()
    print(build_tiny_model(Path(args.out_dir), rows, spec, args.family))
    return 0


def cmd_train(args) -> int:
    from dialsum.pipeline import engine_for, forced_set, open_run, preflight, run_stages, select_models, train_stage

    cfg = _config(args)
    models = select_models(cfg, args.model)
    if args.dry_run:
        from dialsum.plan import describe_plan

        for m in models:
            print(describe_plan(m, cfg.generate))
        return 0
    preflight(models)
    ctx = open_run(cfg, args.data_dir, args.run_id)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun/accelerate: every rank trains in-process
    eng = engine_for(ctx, in_process=distributed)
    stages = []
    for m in models:
        tr = train_stage(ctx, m)
        stages += [ctx.stages[d] for d in tr.deps] + [tr]
    results = run_stages(eng, stages, forced_set(stages, ["train"] if args.force else [], None))
    if int(os.environ.get("RANK", "0")) == 0:
        for m in models:
            r = results[f"train:{m.name}"]
            print(f"{m.name}: best dev-select final {r['best_dev_select']} -> {r['adapter']}")
        print(f"run: {ctx.run_dir}")
    return 0


def cmd_generate(args) -> int:
    from dialsum.pipeline import engine_for, generate_stage, open_run, preflight, select_models, train_stage

    cfg = _config(args)
    models = select_models(cfg, args.model)
    if args.adapter and len(models) != 1:
        raise DialsumError("--adapter needs exactly one model (--model NAME, or a config with one model)")
    preflight(models)
    ctx = open_run(cfg, args.data_dir, args.run_id, args.backend)
    eng = engine_for(ctx)
    for m in models:
        if args.adapter:
            stage = generate_stage(ctx, m, Path(args.adapter))
        else:
            tr = train_stage(ctx, m)
            if eng.done(tr) is None:
                raise DialsumError(f"model {m.name}: not trained yet for this config (stage {tr.name}, key {tr.key}); "
                                   f"run `dialsum train --config {args.config}` first, or pass --adapter PATH")
            for d in tr.deps:
                eng.run(ctx.stages[d])
            eng.run(tr)
            stage = generate_stage(ctx, m)
        result = eng.run(stage, force=args.force)
        for part in result["parts"]:
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                shutil.copy2(part, Path(args.out) / Path(part).name)
            print(part)
    print(f"run: {ctx.run_dir}")
    return 0


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


def cmd_ensemble(args) -> int:
    from dialsum.io_utils import atomic_write_text, csv_text

    sources = [Path(p) for p in args.candidates]
    if len(sources) == 1 and (sources[0] / "manifest.json").is_file():
        return _ensemble_run_dir(args, sources[0])
    from dialsum.candidates import read_predictions, read_store
    from dialsum.ensemble_fit import select

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
                                                   workers=args.workers)
    rows = [[f, picks[f].text, picks[f].source] for f in order if f in picks]
    if report is not None:
        _print_fit(report)
        if args.report:
            from dialsum.io_utils import atomic_write_json

            atomic_write_json(Path(args.report), report)
    if args.scores:
        from dialsum.ensemble_fit import SCORE_COLUMNS, score_rows

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
    from dialsum.io_utils import atomic_write_text, csv_text
    from dialsum.pipeline import engine_for, ensemble_stage_of_run, reopen_run
    from dialsum.stages import read_split_table

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


def cmd_postprocess(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.io_utils import atomic_write_json, atomic_write_text, csv_text
    from dialsum.postprocess import RULES, FittedPostprocess, LengthCap, PostProcessor

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
        from dialsum.stages import metric_scorer

        refs = read_references(Path(refs_path))
        names = [f for f in refs if f in preds]
        if not names:
            raise DialsumError(f"{args.pred}: no fname in common with {refs_path}")
        proc = PostProcessor(tuple(rules), True, args.length_cap == "tune", cap, "mecab")
        fitted = proc.fit([preds[f] for f in names], [refs[f] for f in names],
                          metric_scorer({"semantics": args.semantics, "tokenizer": "mecab"}))
        print(f"{'rule':<34}{'on':>10}{'off':>10}{'delta':>10}{'half A':>10}{'half B':>10}  enabled")
        for g in fitted.gains:
            print(f"{g.rule:<34}{g.on:10.4f}{g.off:10.4f}{g.delta:+10.4f}{g.delta_a:+10.4f}{g.delta_b:+10.4f}  "
                  f"{'yes' if g.enabled else 'no'}")
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


def read_references(path: Path) -> dict[str, list[str]]:
    """fname -> references, from `summary` or `summary1..summaryK` columns."""
    from dialsum.data import read_table

    header, rows = read_table(path)
    cols = sorted((h for h in header if h.startswith("summary") and h[7:].isdigit()), key=lambda h: int(h[7:]))
    cols = cols or (["summary"] if "summary" in header else [])
    if "fname" not in header or not cols:
        raise DialsumError(f"{path}: needs fname and summary (or summary1..summaryK) columns")
    out = {}
    for i, r in enumerate(rows, start=1):
        refs = [" ".join(r[c].split()) for c in cols if r[c].strip()]
        if not refs:
            raise DialsumError(f"{path}: row {i} ({r['fname']}): no reference summary")
        out[r["fname"].strip()] = refs
    return out


def cmd_score(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.metric import score_corpus

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


def cmd_submit(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.submit import write_submission

    preds = read_predictions(Path(args.pred))
    print(write_submission(Path(args.out_dir), args.run_id, Path(args.sample_submission), preds))
    return 0


def cmd_tune(args) -> int:
    from dialsum.config import load_config, load_tune_config
    from dialsum.tune import run_worker, study_dir, tune

    tc = load_tune_config(Path(args.config))
    tc = tc.model_copy(update={k: v for k, v in (("study", args.study), ("space", args.space)) if v})
    if args.trials < 1 or args.workers < 1:
        raise DialsumError("--trials and --workers must be at least 1")
    run_dir = Path(args.run) if args.run else None
    if args.worker is not None:  # one of the processes `tune --workers W` starts
        base = load_config(tc.run_config)
        run_worker(tc, base, study_dir(base, tc.study), args.storage or tc.storage, args.trials, run_dir, args.worker)
        return 0
    s = tune(tc, args.trials, args.workers, args.storage or tc.storage, run_dir, Path(args.config))
    c = s["check"]
    print(f"study {s['study']} ({s['space']}): {s['trials']}")
    print(f"  tuned   dev-select {c['tuned']['select']:.4f}  dev-report {c['tuned']['report']:.4f}  {s['best_params']}")
    print(f"  default dev-select {c['default']['select']:.4f}  dev-report {c['default']['report']:.4f}")
    if "best_single" in c:
        b = c["best_single"]
        print(f"  best single ({b['source']}) dev-select {b['select']:.4f}  dev-report {b['report']:.4f}")
    print(f"tuned config: {s['tuned_config']}")
    print(f"summary: {Path(s['tuned_config']).name and study_dir(load_config(tc.run_config), tc.study) / 'summary.md'}")
    return 0


def cmd_preview(args) -> int:
    from dialsum.config import load_model_config
    from dialsum.data import load_dialogues
    from dialsum.preview import (competition_files, example_view, format_view, tokenizer_for, truncation,
                                 truncation_problems)

    cfg = _config(args)
    models = []
    for name in args.model or [m.name for m in cfg.models]:
        if name.endswith((".yaml", ".yml")) or Path(name).is_file():
            models.append(load_model_config(Path(name)))
        else:
            from dialsum.pipeline import select_models

            models += select_models(cfg, [name])
    data_dir = Path(args.data_dir) if args.data_dir else Path(cfg.data.dir)
    train_csv = data_dir / "train.csv" if (data_dir / "train.csv").is_file() else Path(cfg.data.dir) / "train.csv"
    train = load_dialogues(train_csv, with_summary=True)
    texts = [d.dialogue for d in train] + [d.summary for d in train]
    out = []
    for m in models:
        mt = tokenizer_for(m, Path(args.tokenizer) if args.tokenizer else None, texts)
        if args.lengths:
            rows = truncation(mt, m, competition_files(data_dir))
            out += rows
            if not args.json:
                for r in rows:
                    summ = "-" if r["summary_truncated"] is None else f"{r['summary_truncated']:.2%}"
                    print(f"{m.name:<20} {r['split']:<10} {r['rows']:>6} rows  dialogues > {r['max_input_tokens']}: "
                          f"{r['dialogue_truncated']:.2%}  references > {r['max_new_tokens']}: {summ}")
                for line in truncation_problems(rows):
                    print(f"warning: {line}")
            continue
        if not 0 <= args.row < len(train):
            raise DialsumError(f"{train_csv}: --row {args.row} out of range (0..{len(train) - 1})")
        v = example_view(mt, m, train[args.row])
        out.append(v)
        if not args.json:
            print(format_view(v))
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 and not args.lengths else out, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dialsum", description="Korean dialogue summarisation with fine-tuned LLMs.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="run config YAML (default: %(default)s)")
        sp.add_argument("--data-dir", help="folder with train.csv, dev.csv, test.csv, sample_submission.csv")
        sp.add_argument("--run-id", help="run folder name under output_dir (default: <name>-<config/data hash>)")
        sp.add_argument("--output-dir", help="override the config's output_dir (run folders)")
        sp.add_argument("--submissions-dir", help="override the config's submissions_dir")

    sp = sub.add_parser("run", help="all stages: train, generate, ensemble, postprocess, submit, report")
    with_config(sp)
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.add_argument("--only-model", action="append", metavar="NAME",
                    help="train and generate only this model (repeatable), then stop before the ensemble")
    sp.add_argument("--from-stage", choices=STAGE_KINDS, help="recompute this stage kind and every later one")
    sp.add_argument("--force", action="append", default=[], metavar="STAGE",
                    help="recompute this stage (e.g. train:tiny, or a kind: generate) and what depends on it")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("build-tiny-model", help="build the tiny local Llama + tokenizer (CPU stand-in for an LLM)")
    sp.add_argument("out_dir")
    sp.add_argument("--train", default="data/sample/train.csv", help="training CSV for the tokenizer (default: %(default)s)")
    sp.add_argument("--pretrain-steps", type=int, help="pre-training steps on the dialogues (causal LM / denoising)")
    sp.add_argument("--family", choices=["decoder", "seq2seq"], default="decoder",
                    help="a Llama (decoder) or a BART (seq2seq) (default: %(default)s)")
    sp.set_defaults(func=cmd_build_tiny_model)

    sp = sub.add_parser("train", help="QLoRA fine-tuning of the configured models (best adapter by dev score)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="train only this model (repeatable)")
    sp.add_argument("--resume", action="store_true",
                    help="continue from the last checkpoint (always done: a stage resumes in place; kept for scripts)")
    sp.add_argument("--force", action="store_true", help="train from scratch even if this model's key is done")
    sp.add_argument("--dry-run", action="store_true", help="print each model's plan and GPU memory estimate")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("generate", help="candidate summaries for dev and test (vLLM or transformers)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="only this model (repeatable)")
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.add_argument("--adapter", help="a LoRA adapter folder from anywhere (then no training is needed)")
    sp.add_argument("--out", help="also copy the candidate parts into this folder")
    sp.add_argument("--force", action="store_true", help="regenerate even if this key is done")
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("ensemble", help="ROUGE-consensus (MBR) selection over candidates")
    sp.add_argument("--candidates", nargs="+", required=True,
                    help="submission-style CSVs, or one run folder (runs/<id>: the run's own ensemble stage)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--split", choices=["dev", "test", "all"], default="all",
                    help="split(s) to write when selecting from a run folder or store (default: %(default)s)")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--weights", help="source=weight,... (source = file stem, model or model/decoding)")
    sp.add_argument("--fit-refs", help="fit membership, weights and the quality prior on the fnames of this CSV "
                                       "(fname + summary or summary1..K); nothing else informs a choice")
    sp.add_argument("--report", help="with --fit-refs: write the fitted choices and the k-fold estimate as JSON")
    sp.add_argument("--scores", help="write every candidate's utility, source and whether it was chosen (CSV)")
    sp.add_argument("--utility", choices=["mean", "rouge1", "rouge2", "rougeL"], default="mean",
                    help="consensus utility from the R1/R2/RL F1 matrices (default: %(default)s)")
    sp.add_argument("--workers", type=int, default=2, help="processes for tokenisation (default: %(default)s)")
    sp.set_defaults(func=cmd_ensemble)

    sp = sub.add_parser("postprocess", help="apply post-processing rules; --ablate measures each on dev")
    sp.add_argument("--pred", required=True, help="CSV with fname (or id) and summary")
    sp.add_argument("--out", help="write the processed CSV here")
    sp.add_argument("--rules", help="comma-separated rule names, in order (default: all)")
    sp.add_argument("--ablate", action="store_true", help="print each rule's dev gain and keep only helpful rules")
    sp.add_argument("--refs", help="references CSV for --ablate (same as --fit-refs)")
    sp.add_argument("--fit-refs", help="fit rules and length cap on the rows of --pred present here "
                                       "(e.g. runs/<id>/dev_select.csv), then apply to every row")
    sp.add_argument("--fitted", help="apply a saved fit (JSON from --save-fit or a run's postprocess stage)")
    sp.add_argument("--save-fit", help="write the fitted choices as JSON")
    sp.add_argument("--length-cap", choices=["tune", "off"], default="tune",
                    help="with --ablate: tune a length cap (sentences / morphemes) on dev (default: %(default)s)")
    sp.add_argument("--max-sentences", type=int, help="fixed cap: keep at most this many sentences")
    sp.add_argument("--max-morphemes", type=int, help="fixed cap: whole sentences up to this many Mecab morphemes")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.set_defaults(func=cmd_postprocess)

    sp = sub.add_parser("submit", help="write a validated submission CSV (never overwrites)")
    sp.add_argument("--pred", required=True, help="CSV with fname (or id) and summary")
    sp.add_argument("--sample-submission", required=True)
    sp.add_argument("--out-dir", default="submissions")
    sp.add_argument("--run-id", required=True, help="file name stem")
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("tune", help="Optuna study: LoRA rank/learning rate (train) or ensemble/post-processing (infer)")
    sp.add_argument("--config", default="configs/tune.yaml", help="tuning YAML (default: %(default)s)")
    sp.add_argument("--trials", type=int, default=20, help="trials to add to the study (default: %(default)s)")
    sp.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (default: %(default)s)")
    sp.add_argument("--storage", help="storage URL (default: runs/tune/<study>/journal.log); sqlite:///x.db, "
                                      "postgresql://… for several machines")
    sp.add_argument("--study", help="study name (default: the YAML's `study`)")
    sp.add_argument("--space", choices=["train", "infer"], help="override the YAML's `space`")
    sp.add_argument("--run", help="infer space: the run folder whose candidates to tune over "
                                  "(default: the run config's default run)")
    sp.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # index of a worker process
    sp.set_defaults(func=cmd_tune)

    sp = sub.add_parser("preview", help="one training row as the model is trained on it: trained tokens, stop "
                                        "tokens, BOS; --lengths: truncation with the model's tokenizer")
    with_config(sp)
    sp.add_argument("--model", action="append", metavar="NAME|YAML",
                    help="a model of the run config, or a model YAML (configs/models/x.yaml); repeatable; default all")
    sp.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder, or a ../shared/checkpoints/<id> folder "
                                                        "(its real tokenizer, else a stand-in built from facts.json)")
    sp.add_argument("--row", type=int, default=0, help="training row to show (default 0)")
    sp.add_argument("--lengths", action="store_true",
                    help="share of dialogues/references longer than max_input_tokens/max_new_tokens, per CSV")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_preview)

    sp = sub.add_parser("score", help="leaderboard metric of a predictions CSV against references")
    sp.add_argument("--pred", required=True)
    sp.add_argument("--refs", required=True)
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--subset", action="store_true", help="score only the fnames in --refs (pred may hold more)")
    sp.set_defaults(func=cmd_score)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DialsumError as e:
        print(f"dialsum: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, no permission, ...: the environment's fault, said in one line
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"dialsum: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dialsum: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
