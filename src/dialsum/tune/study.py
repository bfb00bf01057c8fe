"""Running a study: W worker processes optimise one shared study (each its own seed), then the best trial is checked
once on dev-report next to the untuned config and written out (dialsum.tune.outputs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dialsum.config import RunConfig, load_config
from dialsum.logs import log
from dialsum.engine.run_folder import data_hashes, default_run_id
from dialsum.io.data import load_competition
from dialsum.report.tracking import trial_logger
from dialsum.errors import DialsumError
from dialsum.hardware import visible_gpus
from dialsum.io.files import atomic_write_json
from dialsum.scoring.bootstrap import compare
from dialsum.tune.config import TuneConfig, clip_enqueued
from dialsum.tune.infer_space import InferProblem, infer_objective, infer_params
from dialsum.tune.outputs import write_plots, write_summary_md, write_tuned_yaml
from dialsum.tune.storage import open_study, study_dir
from dialsum.tune.train_space import model_scores, model_scores_on, train_objective, with_model_overrides


def run_worker(tc: TuneConfig, base: RunConfig, folder: Path, storage_url: str | None, n_trials: int,
               run_dir: Path | None, worker: int = 0) -> None:
    """One worker process: optimise n_trials on the shared study."""
    study = open_study(tc, storage_url, folder, worker)
    if tc.space in ("train", "align"):
        obj = train_objective(tc, base, tc.model or base.models[0].name, folder, storage_url)
    else:
        obj = infer_objective(tc, InferProblem(run_dir, tc))
    study.optimize(obj, n_trials=n_trials, catch=(DialsumError,),
                   callbacks=[trial_logger(base.tracking, tc.study, folder, Path(base.output_dir))])


def worker_devices(workers: int, visible: list[str], share: bool = False) -> list[str]:
    """The CUDA_VISIBLE_DEVICES of each worker: one of the GPUs this process may use (the user's mask respected:
    with CUDA_VISIBLE_DEVICES=2,3 the workers get 2 and 3), in turn when `share`; none on a machine without GPUs.
    More workers than GPUs is refused unless `share` says several may train on one card."""
    if not visible:
        return []
    if workers > len(visible) and not share:
        raise DialsumError(f"--workers {workers} but {len(visible)} GPU(s) visible ({','.join(visible)}): one worker "
                           f"per GPU, or pass --share-gpus to put several workers on one GPU")
    return [visible[i % len(visible)] for i in range(workers)]


def base_config(tc: TuneConfig, data_dir: Path | None = None) -> RunConfig:
    """The run config a study tunes, on `data_dir` when given (`tune --data-dir`)."""
    return load_config(tc.run_config, {"data": {"dir": str(Path(data_dir).resolve())}} if data_dir else None)


def tune(tc: TuneConfig, trials: int, workers: int, storage_url: str | None, run_dir: Path | None,
         config_path: Path, sets: list[str] | None = None, share_gpus: bool = False, summary: bool = True,
         data_dir: Path | None = None) -> dict:
    """Add `trials` (0: none) with `workers` processes, then (unless not `summary`) the held-out check and summary."""
    base = base_config(tc, data_dir)
    n_workers = max(1, min(workers, trials))
    devices = worker_devices(n_workers, visible_gpus(), share_gpus) if n_workers > 1 else []  # refused before any work
    folder = study_dir(base, tc.study)
    folder.mkdir(parents=True, exist_ok=True)
    if tc.model and tc.model not in [m.name for m in base.models]:
        raise DialsumError(f"{config_path}: model {tc.model!r} is not in {tc.run_config}")
    if tc.space == "infer" and run_dir is None:
        run_dir = Path(base.output_dir) / default_run_id(base, data_hashes(load_competition(Path(base.data.dir))))
    if tc.space == "infer" and not (run_dir / "manifest.json").is_file():
        raise DialsumError(f"{run_dir}: no finished run to tune over (run `dialsum run --config {tc.run_config}`)")
    study = open_study(tc, storage_url, folder)
    before = len(study.trials)
    if before == 0:
        for i, params in enumerate(tc.enqueue):
            fitted, notes = clip_enqueued(tc, params)
            if notes:
                log(f"enqueued trial {i}: {'; '.join(notes)}")
            study.enqueue_trial(fitted)
    shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
    shares = [s for s in shares if s > 0]
    log(f"study {tc.study} ({tc.space}): {before} trial(s) so far, adding {trials} with {len(shares)} worker(s); "
        f"storage {storage_url or folder / 'journal.log'}")
    if len(shares) == 1:
        run_worker(tc, base, folder, storage_url, shares[0], run_dir)
    elif shares:  # (none with --trials 0: the summary of what the study holds)
        procs = []
        for i, n in enumerate(shares):
            env = {**os.environ}
            if devices:
                env["CUDA_VISIBLE_DEVICES"] = devices[i]
            procs.append(subprocess.Popen([sys.executable, "-m", "dialsum", "tune", "--config", str(config_path),
                                           "--trials", str(n), "--workers", "1", "--worker", str(i),
                                           "--space", tc.space,
                                           "--study", tc.study, *(["--storage", storage_url] if storage_url else []),
                                           *(["--run", str(run_dir)] if run_dir else []),
                                           *(["--data-dir", str(data_dir)] if data_dir else []),
                                           *[x for s in sets or [] for x in ("--set", s)]], env=env))
        codes = [p.wait() for p in procs]
        if any(codes):
            log(f"worker exit codes {codes} (the study stays usable; re-run to add trials)")
    study = open_study(tc, storage_url, folder)
    if not summary:
        return {"study": tc.study, "space": tc.space, "trials": trial_states(study)}
    return summarise(tc, base, study, folder, run_dir, Path(config_path).resolve().parent / "tuned")


def trial_states(study) -> dict[str, int]:
    """How many trials the study holds in each state (COMPLETE, FAIL, PRUNED, ...)."""
    import optuna

    return {s.name: sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}


def summarise(tc: TuneConfig, base: RunConfig, study, folder: Path, run_dir: Path | None, tuned_dir: Path) -> dict:
    import optuna

    states = trial_states(study)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise DialsumError(f"study {tc.study}: no trial completed ({states}); see {folder}")
    best = study.best_trial
    if tc.space in ("train", "align"):
        model = tc.model or base.models[0].name
        over = best.user_attrs["overrides"]
        tuned = with_model_overrides(base, model, over)
        tuned_rep = model_scores(tuned, model, "report", folder / "check" / "tuned")
        default = model_scores_on(base, model, ("select", "report"), folder / "check" / "default")
        default_rep = default["report"]
        check = {"tuned": {"select": best.value, "report": tuned_rep["final"]},
                 "default": {"select": default["select"]["final"], "report": default_rep["final"]},
                 "paired": compare(tuned_rep["per_dialogue"], default_rep["per_dialogue"]).as_dict()}
        best_cfg = {"model": model, "overrides": over}
        data_dir = Path(base.data.dir)
        # better only when the paired interval on dev-report lies above zero
        check["better"] = check["paired"]["ci_low"] > 0
    else:
        problem = InferProblem(run_dir, tc)
        weights, utility, fitted = _replay_infer(tc, problem, best)
        q = {s: problem.score({s: 1.0}, "mean", None, "select") for s in problem.sources}
        best_src = max(problem.sources, key=lambda s: q[s])
        # judged as it would be submitted: the tuned YAML's run (weights under the ensemble's guard, rules under the
        # post-processing ablation) against what the run it tuned over really submits (its final)
        tuned, untuned = problem.submitted(weights, utility, fitted), problem.untuned_final()
        tuned_rows, untuned_rows = (problem.text_rows(x, "report") for x in (tuned, untuned))
        differs = any(tuned[f] != untuned[f] for f in untuned)
        check = {"tuned": {"select": best.value, "report": sum(tuned_rows) / len(tuned_rows),
                           "trial_report": problem.score(weights, utility, fitted, "report")},
                 "default": {p: sum(r) / len(r) for p in ("select", "report")
                             for r in [problem.text_rows(untuned, p)]},
                 "best_single": {"source": best_src, "select": q[best_src],
                                 "report": problem.score({best_src: 1.0}, "mean", None, "report")},
                 "differs": differs,
                 "paired": compare(tuned_rows, untuned_rows).as_dict(),
                 "paired_best_single": compare(tuned_rows, problem.rows({best_src: 1.0}, "mean", None,
                                                                        "report")).as_dict()}
        best_cfg = {"weights": weights, "utility": utility, "postprocess": fitted}
        data_dir = problem.ctx.data_dir
        # better only when the tuned config submits something else and its paired interval lies above zero
        check["better"] = differs and check["paired"]["ci_low"] > 0
    yaml_path = write_tuned_yaml(tc, best_cfg, tuned_dir, check, data_dir)
    plots = write_plots(study, folder)
    summary = {"study": tc.study, "space": tc.space, "trials": states, "best_params": best.params,
               "best_trial": best.number, "check": check, "tuned_config": str(yaml_path),
               "accepted": check["better"], "plots": plots}
    atomic_write_json(folder / "summary.json", summary)
    write_summary_md(folder / "summary.md", summary)
    return summary


def _replay_infer(tc: TuneConfig, problem: InferProblem, trial):
    import optuna

    fixed = optuna.trial.FixedTrial(trial.params)
    return infer_params(tc, problem, fixed)
