"""A tuning trial's reporter, built inside the training child from the stage context's `on_evaluate` entry
(`{"fn": "dialsum.tune.reporter:trial_reporter", "args": {...}}`): training code calls it after each evaluation and
never imports the tuning package."""
from __future__ import annotations

from pathlib import Path

from dialsum.tune.config import TuneConfig
from dialsum.tune.storage import make_pruner, make_storage


def trial_reporter(info: dict):
    """For the training child: report (step, dev-select score) to the trial, raise TrialPruned when told."""
    import optuna

    tc = TuneConfig.model_validate(info["tune"])
    storage = make_storage(info["storage"], Path(info["folder"]), (tc.heartbeat.interval, tc.heartbeat.grace))
    study = optuna.load_study(study_name=info["study"], storage=storage, pruner=make_pruner(tc))
    trial = optuna.trial.Trial(study, info["trial_id"])

    def report(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"dev-select {value:.4f} at step {step}")

    return report
