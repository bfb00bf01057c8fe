"""`dialsum tune`: Optuna studies over dialsum's own stages, scored on dev-select only, checked once on dev-report.

* train space: a trial samples LoRA rank (ranks vLLM serves), learning rate (log-uniform), alpha as a multiple of the
  rank, dropout and epochs for one model, trains it as the ordinary `train:<model>` stage (its own child process,
  keyed: a repeated parameter set is a cache hit), reports the dev-select score at every evaluation (the pruner may
  stop it), then greedy-decodes dev-select and returns the leaderboard score.
* infer space: no training. On a finished run's candidates, a trial samples each source's consensus weight (0 =
  out), the utility and the post-processing rules and length cap; hundreds of trials take seconds to minutes.

The study lives in a storage URL (a journal file by default, any RDB URL), so the same command resumes it by name
and adds trials, W workers are W processes sharing it, and several machines with one RDB URL scale it out. After the
trials, the best parameters are scored once on dev-report next to the untuned config, written as a run config
(`configs/tuned/<study>.yaml`) that `dialsum run --config` takes unchanged, with plots and a Markdown summary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dialsum.config import RunConfig, TuneConfig, deep_merge, load_config, read_yaml
from dialsum.engine import StagePruned, log
from dialsum.errors import DialsumError
from dialsum.io_utils import atomic_write_json, atomic_write_text

# ---------------------------------------------------------------- storage and study
def study_dir(cfg: RunConfig, study: str) -> Path:
    return Path(cfg.output_dir) / "tune" / study


def make_storage(url: str | None, folder: Path):
    """A journal file by default; `sqlite:///…`, `postgresql://…`, `mysql://…` as RDB storage with heartbeats (a
    killed worker's trial is failed and retried); a path ending in .log as a journal file."""
    import warnings

    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.endswith(".log"):
        path = Path(url) if url else folder / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise DialsumError(f"--storage {url!r}: not a storage URL (use sqlite:///path.db, postgresql://…, or a "
                           f"journal file path ending in .log)")
    try:
        with warnings.catch_warnings():  # heartbeats and their retry callback are marked experimental in optuna 5
            warnings.simplefilter("ignore")
            from optuna.storages import RetryHeartbeatStaleTrialCallback

            return RDBStorage(url, heartbeat_interval=30, grace_period=90,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    except Exception as e:  # noqa: BLE001 - any driver/URL error is the user's to fix, in one line
        raise DialsumError(f"--storage {url!r}: cannot open ({str(e).splitlines()[0][:200]})") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(tc: TuneConfig, worker: int = 0):
    """Seeded; each worker process gets its own seed (seed + worker index), or parallel workers sample alike."""
    import optuna

    seed = tc.sampler.seed + 1000 * worker
    if tc.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)


def make_pruner(tc: TuneConfig):
    import optuna

    p = tc.pruner
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if p.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def open_study(tc: TuneConfig, storage_url: str | None, folder: Path, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url, folder)
    study = optuna.create_study(storage=storage, study_name=tc.study, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(tc, worker), pruner=make_pruner(tc))
    study.set_user_attr("space", tc.space)
    return study


def trial_reporter(info: dict):
    """For the training child: report (step, dev-select score) to the trial, raise TrialPruned when told."""
    import optuna

    study = optuna.load_study(study_name=info["study"], storage=make_storage(info["storage"], Path(info["folder"])),
                              pruner=make_pruner(TuneConfig.model_validate(info["tune"])))
    trial = optuna.trial.Trial(study, info["trial_id"])

    def report(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"dev-select {value:.4f} at step {step}")

    return report


# ---------------------------------------------------------------- train space
def train_overrides(tc: TuneConfig, trial) -> dict:
    s = tc.train
    r = trial.suggest_categorical("lora_r", s.lora_r)
    mult = trial.suggest_categorical("alpha_multiple", s.alpha_multiple)
    return {"lora": {"r": r, "alpha": float(r * mult),
                     "dropout": trial.suggest_float("dropout", *s.dropout)},
            "train": {"learning_rate": trial.suggest_float("learning_rate", *s.learning_rate, log=True),
                      "epochs": trial.suggest_int("epochs", *s.epochs)}}


def with_model_overrides(cfg: RunConfig, model: str, over: dict) -> RunConfig:
    """The run config with one model's sections overridden, validated as any config is."""
    from pydantic import ValidationError

    models = []
    for m in cfg.models:
        d = m.model_dump(mode="json")
        if m.name == model:
            d = deep_merge(d, over)
        models.append(d)
    try:
        return RunConfig.model_validate({**cfg.model_dump(mode="json"), "models": models})
    except ValidationError as e:
        err = e.errors()[0]
        raise DialsumError(f"trial parameters {over}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def devscore_stage(ctx, model_cfg, rows: list[str], tag: str):
    from dialsum.engine import Stage
    from dialsum.pipeline import VERSIONS, base_of, metric_inputs

    tr = ctx.stages.get(f"train:{model_cfg.name}")
    base_id, base_path, _ = base_of(ctx, model_cfg)
    return Stage(f"devscore:{model_cfg.name}:{tag}", "devscore", VERSIONS.get("devscore", 1), "dialsum.stages:devscore",
                 {"train": tr.key, "base": base_id, "rows": rows, "dev": ctx.hashes["dev"],
                  "metric": metric_inputs(ctx.cfg),
                  "model": model_cfg.model_dump(mode="json", include={"prompt_format", "system_prompt", "instruction",
                                                                      "max_input_tokens", "max_new_tokens",
                                                                      "precision"})},
                 {"data_dir": str(ctx.data_dir), "base_path": base_path, "model": model_cfg.model_dump(mode="json"),
                  "adapter": str(tr.out_dir(ctx.cache) / "adapter")}, child=True, deps=(tr.name,))


def score_model(cfg: RunConfig, model: str, rows_part: str, run_dir: Path, optuna_info: dict | None = None) -> float:
    """Train (or reuse) one model of `cfg`, then its greedy score on dev-select or dev-report."""
    from dialsum.engine import Engine
    from dialsum.pipeline import open_run, select_models, train_stage

    from dataclasses import replace

    ctx = open_run(cfg, run_dir=run_dir)
    m = select_models(cfg, [model])[0]
    eng = Engine(ctx.cache, run_dir)
    tr = train_stage(ctx, m)
    if optuna_info:
        tr = ctx.add(replace(tr, context={**tr.context, "optuna": optuna_info}))
    for d in tr.deps:
        eng.run(ctx.stages[d])
    eng.run(tr)
    rows = list(ctx.split.select if rows_part == "select" else ctx.split.report)
    return eng.run(devscore_stage(ctx, m, rows, rows_part))["score"]["final"]


def train_objective(tc: TuneConfig, base: RunConfig, model: str, folder: Path, storage_url: str | None):
    import optuna

    def objective(trial) -> float:
        over = train_overrides(tc, trial)
        trial.set_user_attr("overrides", over)
        try:
            cfg = with_model_overrides(base, model, over)
            info = {"study": tc.study, "storage": storage_url, "folder": str(folder), "trial_id": trial._trial_id,
                    "tune": tc.model_dump(mode="json")}
            return score_model(cfg, model, "select", folder / "trials" / f"{trial.number:04d}", info)
        except StagePruned:
            raise optuna.TrialPruned() from None
        except DialsumError as e:
            trial.set_user_attr("fail_reason", str(e))
            raise

    return objective


# ---------------------------------------------------------------- infer space
class InferProblem:
    """A finished run's candidates, prepared once per utility: trials only re-weight and post-process."""

    def __init__(self, run_dir: Path, tc: TuneConfig):
        from dialsum.pipeline import reopen_run

        self.ctx = reopen_run(run_dir, lock=False)  # read-only: workers share it
        man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
        parts = [p for k, v in man.items() if k.startswith("generate:") for p in v["result"]["parts"]]
        if not parts:
            raise DialsumError(f"{run_dir}: no finished generate stages to tune over; run `dialsum run` first")
        from dialsum.stages import read_candidates

        self.groups: dict[str, list[tuple[str, str]]] = {}
        for c in read_candidates(parts):
            self.groups.setdefault(c.fname, []).append((c.text, c.source))
        self.sources = list(dict.fromkeys(s for c in self.groups.values() for _, s in c))
        dev = {d.fname: d for d in self.ctx.data.dev}
        self.parts = {p: [dev[f] for f in (self.ctx.split.select if p == "select" else self.ctx.split.report)]
                      for p in ("select", "report")}
        self.tc = tc
        self._prepared: dict[str, dict] = {}

    def dialogues(self, utility: str) -> dict:
        from dialsum.ensemble_fit import prepare

        if utility not in self._prepared:
            dev = {d.fname: d for d in self.ctx.data.dev}
            groups = {f: c for f, c in self.groups.items() if f in dev}
            refs = {f: [dev[f].summary] for f in groups}
            self._prepared[utility] = {d.fname: d for d in prepare(groups, self.sources, self.ctx.cfg.metric.semantics,
                                                                   self.ctx.cfg.metric.tokenizer, refs, utility)}
        return self._prepared[utility]

    def score(self, weights: dict[str, float], utility: str, fitted_pp, part: str) -> float:
        from dialsum.ensemble_fit import Rule
        from dialsum.stages import metric_scorer

        rule = Rule(tuple(weights.get(s, 0.0) for s in self.sources))
        dl = self.dialogues(utility)
        rows = self.parts[part]
        preds = [dl[d.fname].texts[rule.pick(dl[d.fname])] for d in rows]
        if fitted_pp is not None:
            preds = fitted_pp.apply_all(preds)
        return metric_scorer(self.ctx.cfg.metric.model_dump())(preds, [[d.summary] for d in rows])


def infer_params(tc: TuneConfig, problem: InferProblem, trial) -> tuple[dict, str, object]:
    from dialsum.postprocess import RULES, FittedPostprocess, LengthCap

    weights = {s: trial.suggest_categorical(f"w:{s}", tc.infer.weights) for s in problem.sources}
    if not any(weights.values()):
        weights[problem.sources[0]] = 1.0
    utility = trial.suggest_categorical("utility", tc.infer.utility)
    fitted = None
    if tc.infer.postprocess:
        rules = tuple(r for r in RULES if trial.suggest_categorical(f"rule:{r}", [False, True]))
        cap = trial.suggest_categorical("length_cap", ["none", "s1", "s2", "s3"])
        fitted = FittedPostprocess(rules, None if cap == "none" else LengthCap(max_sentences=int(cap[1:])), (),
                                   problem.ctx.cfg.metric.tokenizer)
    return weights, utility, fitted


def infer_objective(tc: TuneConfig, problem: InferProblem):
    def objective(trial) -> float:
        weights, utility, fitted = infer_params(tc, problem, trial)
        return problem.score(weights, utility, fitted, "select")

    return objective


# ---------------------------------------------------------------- running a study
def run_worker(tc: TuneConfig, base: RunConfig, folder: Path, storage_url: str | None, n_trials: int,
               run_dir: Path | None, worker: int = 0) -> None:
    """One worker process: optimise n_trials on the shared study."""
    from dialsum.errors import DialsumError as _E

    study = open_study(tc, storage_url, folder, worker)
    if tc.space == "train":
        obj = train_objective(tc, base, tc.model or base.models[0].name, folder, storage_url)
    else:
        obj = infer_objective(tc, InferProblem(run_dir, tc))
    study.optimize(obj, n_trials=n_trials, catch=(_E,))


def tune(tc: TuneConfig, trials: int, workers: int, storage_url: str | None, run_dir: Path | None,
         config_path: Path) -> dict:
    base = load_config(tc.run_config)
    folder = study_dir(base, tc.study)
    folder.mkdir(parents=True, exist_ok=True)
    if tc.model and tc.model not in [m.name for m in base.models]:
        raise DialsumError(f"{config_path}: model {tc.model!r} is not in {tc.run_config}")
    if tc.space == "infer" and run_dir is None:
        from dialsum.pipeline import data_hashes, default_run_id

        run_dir = Path(base.output_dir) / default_run_id(base, data_hashes(Path(base.data.dir)))
    if tc.space == "infer" and not (run_dir / "manifest.json").is_file():
        raise DialsumError(f"{run_dir}: no finished run to tune over (run `dialsum run --config {tc.run_config}`)")
    study = open_study(tc, storage_url, folder)
    before = len(study.trials)
    if before == 0:
        for params in tc.enqueue:
            study.enqueue_trial(params)
    shares = [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]
    shares = [s for s in shares if s > 0]
    log(f"study {tc.study} ({tc.space}): {before} trial(s) so far, adding {trials} with {len(shares)} worker(s); "
        f"storage {storage_url or folder / 'journal.log'}")
    if len(shares) == 1:
        run_worker(tc, base, folder, storage_url, shares[0], run_dir)
    else:
        procs = []
        gpus = _gpu_count()
        for i, n in enumerate(shares):
            env = {**os.environ}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            procs.append(subprocess.Popen([sys.executable, "-m", "dialsum", "tune", "--config", str(config_path),
                                           "--trials", str(n), "--workers", "1", "--worker", str(i),
                                           "--space", tc.space,
                                           "--study", tc.study, *(["--storage", storage_url] if storage_url else []),
                                           *(["--run", str(run_dir)] if run_dir else [])], env=env))
        codes = [p.wait() for p in procs]
        if any(codes):
            log(f"worker exit codes {codes} (the study stays usable; re-run to add trials)")
    study = open_study(tc, storage_url, folder)
    return summarise(tc, base, study, folder, run_dir, Path(config_path).resolve().parent / "tuned")


def _gpu_count() -> int:
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


# ---------------------------------------------------------------- outputs
def summarise(tc: TuneConfig, base: RunConfig, study, folder: Path, run_dir: Path | None, tuned_dir: Path) -> dict:
    import optuna

    states = {s.name: sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise DialsumError(f"study {tc.study}: no trial completed ({states}); see {folder}")
    best = study.best_trial
    if tc.space == "train":
        model = tc.model or base.models[0].name
        over = best.user_attrs["overrides"]
        tuned = with_model_overrides(base, model, over)
        check = {"tuned": {"select": best.value,
                           "report": score_model(tuned, model, "report", folder / "check" / "tuned")},
                 "default": {"select": score_model(base, model, "select", folder / "check" / "default"),
                             "report": score_model(base, model, "report", folder / "check" / "default")}}
        yaml_path = write_tuned_yaml(tc, {"model": model, "overrides": over}, tuned_dir)
    else:
        problem = InferProblem(run_dir, tc)
        weights, utility, fitted = _replay_infer(tc, problem, best)
        uniform = {s: 1.0 for s in problem.sources}
        q = {s: problem.score({s: 1.0}, "mean", None, "select") for s in problem.sources}
        best_src = max(problem.sources, key=lambda s: q[s])
        check = {"tuned": {"select": best.value, "report": problem.score(weights, utility, fitted, "report")},
                 "default": {p: problem.score(uniform, "mean", None, p) for p in ("select", "report")},
                 "best_single": {"source": best_src, "select": q[best_src],
                                 "report": problem.score({best_src: 1.0}, "mean", None, "report")}}
        yaml_path = write_tuned_yaml(tc, {"weights": weights, "utility": utility, "postprocess": fitted}, tuned_dir)
    plots = write_plots(study, folder)
    summary = {"study": tc.study, "space": tc.space, "trials": states, "best_params": best.params,
               "best_trial": best.number, "check": check, "tuned_config": str(yaml_path), "plots": plots}
    atomic_write_json(folder / "summary.json", summary)
    write_summary_md(folder / "summary.md", summary)
    return summary


def _replay_infer(tc: TuneConfig, problem: InferProblem, trial):
    import optuna

    fixed = optuna.trial.FixedTrial(trial.params)
    return infer_params(tc, problem, fixed)


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), start.resolve())


def write_tuned_yaml(tc: TuneConfig, best: dict, tuned_dir: Path) -> Path:
    """The run config with the best parameters, as YAML that `dialsum run --config` takes unchanged, in `tuned/`
    beside the tuning YAML (configs/tuned/<study>.yaml for configs/tune.yaml)."""
    import yaml

    out = Path(tuned_dir).resolve() / f"{tc.study}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    src = Path(tc.run_config)
    raw = read_yaml(src)
    here = out.parent
    for key in ("output_dir", "submissions_dir"):
        if key in raw:
            raw[key] = _rel(src.parent / str(raw[key]), here)
    if isinstance(raw.get("data"), dict) and "dir" in raw["data"]:
        raw["data"]["dir"] = _rel(src.parent / str(raw["data"]["dir"]), here)
    models = []
    for entry in raw.get("models", []):
        entry = {"base": entry} if isinstance(entry, str) else dict(entry)
        if "base" in entry:
            entry["base"] = _rel(src.parent / entry["base"], here)
        models.append(entry)
    raw["models"] = models
    if "overrides" in best:
        for entry in models:
            name = entry.get("name") or read_yaml((here / entry["base"]).resolve()).get("name")
            if name == best["model"]:
                entry.update(deep_merge({k: entry.get(k, {}) for k in best["overrides"]}, best["overrides"]))
        raw["name"] = f"{raw.get('name', 'run')}-tuned-{tc.study}"
    else:
        raw["ensemble"] = {"fit": False, "weights": best["weights"], "utility": best["utility"]}
        pp = best["postprocess"]
        if pp is not None:
            raw["postprocess"] = {"rules": list(pp.rules), "ablate": False, "tune_length_cap": False,
                                  **({"max_sentences": pp.cap.max_sentences} if pp.cap else {})}
        raw["name"] = f"{raw.get('name', 'run')}-tuned-{tc.study}"
    text = f"# Written by `dialsum tune` (study {tc.study}, {tc.space} space): run with `dialsum run --config {out}`\n"
    text += yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    atomic_write_text(out, text)
    load_config(out)  # what we write must load
    return out


def write_plots(study, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm

    made = []
    for name, fn in (("history", vm.plot_optimization_history), ("importances", vm.plot_param_importances),
                     ("slice", vm.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(6, fig.get_size_inches()[0]), 4)
            path = folder / f"{name}.png"
            fig.savefig(path, dpi=90, bbox_inches="tight")
            plt.close(fig)
            made.append(str(path))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. importances need 2+ distinct trials
            log(f"plot {name} skipped: {e}")
    return made


def write_summary_md(path: Path, s: dict) -> None:
    c = s["check"]
    lines = [f"# Study {s['study']} ({s['space']} space)", "",
             f"Trials: {', '.join(f'{k.lower()} {v}' for k, v in s['trials'].items() if v)}; best trial {s['best_trial']}.",
             "", "| config | dev-select | dev-report |", "|---|---:|---:|",
             f"| tuned (best trial) | {c['tuned']['select']:.4f} | {c['tuned']['report']:.4f} |",
             f"| untuned default | {c['default']['select']:.4f} | {c['default']['report']:.4f} |"]
    if "best_single" in c:
        b = c["best_single"]
        lines.append(f"| best single source ({b['source']}) | {b['select']:.4f} | {b['report']:.4f} |")
    lines += ["", "Tuning saw only dev-select; dev-report was scored once, after the study.", "",
              "Best parameters:", "", "```json", json.dumps(s["best_params"], indent=2, ensure_ascii=False), "```", "",
              f"Tuned config: `{s['tuned_config']}`", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in s["plots"]]
    atomic_write_text(path, "\n".join(lines) + "\n")
