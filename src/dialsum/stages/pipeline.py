"""The recipe of `dialsum run`: open the run folder, plan its stages, run them through the engine (finished stages,
same key, are reused), write the report, track the numbers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dialsum import faults
from dialsum.config import ModelConfig, RunConfig
from dialsum.engine.core import Engine
from dialsum.engine.run_folder import RunContext, open_run
from dialsum.logs import log
from dialsum.report.run_report import ReportRow, StageLine, write_run_report
from dialsum.report.tracking import track_run
from dialsum.stages.plan import Plan, select_models


@dataclass
class RunOutcome:
    """What a run left: its folder, the submission and report (None for `--only-model`), the report's rows, the
    stages computed (not cached) and every stage's result."""
    run_id: str
    run_dir: Path
    submission: Path | None = None
    final_submission: Path | None = None  # with final.refit: <run-id>-final.csv
    report: Path | None = None
    rows: list[ReportRow] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)


def preflight(models: list[ModelConfig]) -> None:
    """Checks that need no model loaded: hub ids reachable or cached, the hardware able to hold the model."""
    from dialsum.models.loading import check_feasible, check_source

    for m in models:
        if m.path is not None:
            check_source(m.path)
        check_feasible(m)


def engine_for(ctx: RunContext, in_process: bool = False) -> Engine:
    eng = Engine(ctx.cache, ctx.run_dir, in_process=in_process)
    eng.manifest.update({"run_id": ctx.run_id, "data_dir": str(ctx.data_dir), "backend": ctx.backend,
                         "cache": str(ctx.cache.resolve())})
    return eng


def run_plan(eng: Engine, plan: Plan, forced: set[str] = frozenset()) -> dict[str, dict]:
    """Every stage of the plan in order; the ones in `forced` recomputed even when finished."""
    return {s.name: eng.run(s, force=s.name in forced) for s in plan.stages}


def run_pipeline(cfg: RunConfig, data_dir: Path | None = None, run_id: str | None = None,
                 backend: str | None = None, only_models: list[str] | None = None, from_stage: str | None = None,
                 force: list[str] | None = None, sets: list[str] | None = None) -> RunOutcome:
    """Every stage in order; finished stages (same key) are reused, the rest computed."""
    # `--only-model`: a lock of its own, so processes (shells, GPUs, machines sharing output_dir) on other models
    # proceed in parallel; a plain run holds the folder's lock
    scope = "models-" + "+".join(sorted(only_models)) if only_models else None
    ctx = open_run(cfg, data_dir, run_id, backend, sets=sets, lock_scope=scope)
    log(f"run {ctx.run_id} in {ctx.run_dir} (cache {ctx.cache})")
    models = select_models(cfg, only_models)
    preflight(models)
    eng = engine_for(ctx)
    plan = Plan.models(ctx, models) if only_models else Plan.full(ctx)
    results = run_plan(eng, plan, plan.recompute(force or [], from_stage))
    outcome = RunOutcome(ctx.run_id, ctx.run_dir, ran=eng.ran, results=results)
    if not only_models:
        man = eng.manifest["stages"]
        lines = [StageLine(s.name, s.key, man.get(s.name, {}).get("status", "?")) for s in plan.stages]
        rep = write_run_report(ctx.run_dir, ctx.run_id, (len(ctx.split.select), len(ctx.split.report)), lines,
                               results, smoke=cfg.data.limit)
        track_run(cfg.tracking, ctx.run_id, ctx.run_dir, Path(cfg.output_dir), man, [r.as_dict() for r in rep.rows],
                  rep.comparisons)
        outcome.submission, outcome.report, outcome.rows = Path(results["submit"]["path"]), rep.path, rep.rows
        if "final" in results:
            outcome.final_submission = Path(results["final"]["path"])
        log(f"report: {rep.path}")
    faults.probe_imports()
    return outcome
