"""`dialsum run`, `train`, `generate` and `build-tiny-model`: the commands that run stages through the engine."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from dialsum.config import TinyModelSpec, load_config
from dialsum.logs import console
from dialsum.engine.run_folder import open_run
from dialsum.errors import DialsumError
from dialsum.io.data import load_dialogues
from dialsum.stages import generate as generate_stage
from dialsum.stages.pipeline import engine_for, preflight, run_pipeline, run_plan
from dialsum.stages.plan import Plan, select_models


def config_of(args):
    """The run config of `--config`, with the folder flags every run command takes applied (and --quiet/--verbose
    set for the terminal)."""
    if getattr(args, "quiet", False) or getattr(args, "verbose", False):
        console(logging.WARNING if args.quiet else logging.DEBUG)
    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    if getattr(args, "submissions_dir", None):
        overrides["submissions_dir"] = str(Path(args.submissions_dir).resolve())
    if getattr(args, "limit", None):
        overrides["data"] = {"limit": args.limit}
    if getattr(args, "final", False):
        overrides["final"] = {"refit": True}
    return load_config(Path(args.config), overrides, getattr(args, "set", None))


def run(args) -> int:
    if (args.parallel_models or 1) > 1:
        if args.only_model:
            raise DialsumError("--parallel-models runs every model; drop --only-model (or run those yourself)")
        from dialsum.commands.parallel import run_models_in_parallel

        run_models_in_parallel(config_of(args), args.parallel_models)
    out = run_pipeline(config_of(args), args.data_dir, args.run_id, args.backend, args.only_model, args.from_stage,
                       args.force, args.set)
    if out.submission is None:
        print(f"run: {out.run_dir} (model stages only: {', '.join(args.only_model)})")
        return 0
    print(f"  {'stage':<12} {'dev-select':>10} {'dev-report':>10}  detail")
    for r in out.rows:
        sel = f"{r.select['final']:10.4f}" if r.select else f"{'-':>10}"
        rep = f"{r.report['final']:10.4f}" if r.report else f"{'-':>10}"
        print(f"  {r.stage:<12} {sel} {rep}  {r.detail}")
    print(f"run: {out.run_dir}")
    print(f"report: {out.report}")
    print(f"submission: {out.submission}")
    if out.final_submission:
        print(f"final submission (refit on train + dev; no dev number exists for it): {out.final_submission}")
    return 0


def build_tiny_model(args) -> int:
    from dialsum.models.tiny import build_tiny_model as build

    rows = load_dialogues(Path(args.train), with_summary=True)
    spec = TinyModelSpec(pretrain_steps=args.pretrain_steps) if args.pretrain_steps is not None else TinyModelSpec()
    print(build(Path(args.out_dir), rows, spec, args.family))
    return 0


def train(args) -> int:
    cfg = config_of(args)
    models = select_models(cfg, args.model)
    if args.dry_run:
        return dry_run(args, cfg, models)
    preflight(models)
    ctx = open_run(cfg, args.data_dir, args.run_id, sets=args.set)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun/accelerate: every rank trains in-process
    eng = engine_for(ctx, in_process=distributed)
    plan = Plan.models(ctx, models, until="train")
    results = run_plan(eng, plan, plan.recompute(["train"] if args.force else []))
    if int(os.environ.get("RANK", "0")) == 0:
        for m in models:
            r = results[f"train:{m.name}"]
            print(f"{m.name}: best dev-select final {r['best_dev_select']} -> {r['adapter']}")
        print(f"run: {ctx.run_dir}")
    return 0


def dry_run(args, cfg, models) -> int:
    """Memory per stage and hours per stage on a card, per model, and the run's total; --json for machines."""
    import json

    from dialsum.models.dry_run import describe_plan, time_lines, time_summary
    from dialsum.models.memory import estimate_gpu_gib
    from dialsum.models.preview import competition_files
    from dialsum.models.time_plan import card_for, plan_run

    data_dir = Path(args.data_dir or cfg.data.dir)
    splits = {k: v for k, v in competition_files(data_dir).items() if k in ("train", "dev", "test")}
    if "train" not in splits:
        raise DialsumError(f"{data_dir}: no train.csv to plan the time from")
    card = card_for(args.gpu, Path(args.rehearsal) if args.rehearsal else None)
    plan = plan_run(cfg, models, splits, card, args.rows, args.hours)
    if args.json:
        for m, p in zip(models, plan["models"]):
            p["memory_gib"] = estimate_gpu_gib(m, cfg.generate)
        print(json.dumps(plan, ensure_ascii=False, indent=1))
        return 0
    for m, p in zip(models, plan["models"]):
        print(describe_plan(m, cfg.generate))
        print("\n".join(time_lines(p)))
    print("\n".join(time_summary(plan)))
    return 0


def generate(args) -> int:
    cfg = config_of(args)
    models = select_models(cfg, args.model)
    if args.adapter and len(models) != 1:
        raise DialsumError("--adapter needs exactly one model (--model NAME, or a config with one model)")
    preflight(models)
    ctx = open_run(cfg, args.data_dir, args.run_id, args.backend, sets=args.set)
    eng = engine_for(ctx)
    plan = Plan(ctx, [])
    for m in models:
        stage = generate_stage.plan(ctx, m, Path(args.adapter) if args.adapter else None)
        if not args.adapter:
            tr = ctx.stages[f"train:{m.name}"]
            if eng.done(tr) is None:
                raise DialsumError(f"model {m.name}: not trained yet for this config (stage {tr.name}, key {tr.key}); "
                                   f"run `dialsum train --config {args.config}` first, or pass --adapter PATH")
        for up in plan.closure(stage)[:-1]:  # its base and, without --adapter, train and (with `align`) prefs, align
            eng.run(up)
        result = eng.run(stage, force=args.force)
        for part in result["parts"]:
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                shutil.copy2(part, Path(args.out) / Path(part).name)
            print(part)
    print(f"run: {ctx.run_dir}")
    return 0
