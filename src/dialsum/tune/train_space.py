"""The train and align spaces: a train trial samples LoRA rank, alpha multiple, dropout, learning rate and epochs for
one model and trains it as the ordinary keyed `train:<model>` stage (with the trial's reporter as its `on_evaluate`
callback); an align trial samples the model's `align` beta and learning rate and runs its ordinary `align:<model>`
stage (SFT and the preference samples are reused across trials). Either is scored by greedy decoding of dev-select
with the weights generation would use (a `devscore` stage)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dialsum.config import RunConfig, deep_merge
from dialsum.engine.child import StagePruned
from dialsum.engine.core import Engine
from dialsum.engine.run_folder import open_run
from dialsum.errors import DialsumError
from dialsum.stages import align, devscore, train
from dialsum.stages.plan import Plan, select_models
from dialsum.tune.config import TuneConfig


def train_overrides(tc: TuneConfig, trial) -> dict:
    s = tc.train
    r = trial.suggest_categorical("lora_r", s.lora_r)
    mult = trial.suggest_categorical("alpha_multiple", s.alpha_multiple)
    return {"lora": {"r": r, "alpha": float(r * mult),
                     "dropout": trial.suggest_float("dropout", *s.dropout)},
            "train": {"learning_rate": trial.suggest_float("learning_rate", *s.learning_rate, log=True),
                      "epochs": trial.suggest_int("epochs", *s.epochs)}}


def align_overrides(tc: TuneConfig, trial) -> dict:
    s = tc.align
    return {"align": {"beta": trial.suggest_float("beta", *s.beta, log=True),
                      "learning_rate": trial.suggest_float("align_learning_rate", *s.learning_rate, log=True)}}


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


def score_model(cfg: RunConfig, model: str, rows_part: str, run_dir: Path,
                optuna_info: dict | None = None) -> float:
    """Train (or reuse) one model of `cfg`, then its greedy score on dev-select or dev-report."""
    return model_scores(cfg, model, rows_part, run_dir, optuna_info)["final"]


def model_scores(cfg: RunConfig, model: str, rows_part: str, run_dir: Path,
                 optuna_info: dict | None = None) -> dict:
    """score_model's whole score dict: final, R1/R2/RL and each dialogue's own score (`per_dialogue`)."""
    return model_scores_on(cfg, model, (rows_part,), run_dir, optuna_info)[rows_part]


def model_scores_on(cfg: RunConfig, model: str, parts: tuple[str, ...], run_dir: Path,
                    optuna_info: dict | None = None) -> dict[str, dict]:
    """Train (or reuse) one model of `cfg`, align it when configured, and score its greedy decoding on each of
    `parts` ("select", "report"): every stage of that that is not cached runs in one child process."""
    ctx = open_run(cfg, run_dir=run_dir)
    m = select_models(cfg, [model])[0]
    eng = Engine(ctx.cache, run_dir)
    tr = train.plan(ctx, m)
    if optuna_info:  # the trial's reporter reaches the training child as a named callback (see tune.reporter)
        ctx.add(replace(tr, context={**tr.context, "on_evaluate": {"fn": "dialsum.tune.reporter:trial_reporter",
                                                                   "args": optuna_info}}))
    plan = Plan(ctx, [])
    plan.add(align.plan(ctx, m) if m.align.method != "none" else ctx.stages[tr.name])
    chain = plan.stages
    scored = [devscore.plan(ctx, m, list(ctx.split.select if p == "select" else ctx.split.report), p) for p in parts]
    results = eng.run_together(chain + scored)
    return {p: r["score"] for p, r in zip(parts, results[len(chain):])}


def train_objective(tc: TuneConfig, base: RunConfig, model: str, folder: Path, storage_url: str | None):
    import optuna

    if tc.space == "align" and next(m for m in base.models if m.name == model).align.method == "none":
        raise DialsumError(f"{tc.run_config}: model {model} has align.method none; the align space tunes the beta "
                           f"and learning rate of a configured method (dpo, grpo or rank)")
    sample = align_overrides if tc.space == "align" else train_overrides

    def objective(trial) -> float:
        over = sample(tc, trial)
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
