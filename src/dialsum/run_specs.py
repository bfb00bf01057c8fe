"""The run-level sections of a run config that hold no model (the dev split, experiment tracking, the endgame's
refit): typed pydantic sections that `dialsum.config` assembles into a RunConfig."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dialsum.model_specs import Strict


class DevSplitSpec(Strict):
    """dev -> dev-select (everything that chooses) + dev-report (only scored); stratified by topic, seeded."""
    select_ratio: float = Field(0.5, gt=0, lt=1, description="share of dev that chooses (dev-select); the rest is "
                                                             "only scored (dev-report)")
    seed: int | None = Field(None, ge=0, description="default: the run's seed")


class TrackingSpec(Strict):
    """Where a run's numbers go besides report.md: TensorBoard event files under runs/<id>/tensorboard (default),
    an MLflow tracking server or local SQLite store, Weights & Biases (offline unless logged in), or nowhere."""
    backend: Literal["tensorboard", "mlflow", "wandb", "none"] = Field("tensorboard",
        description="tensorboard (runs/<id>/tensorboard), mlflow, wandb or none")
    uri: str | None = Field(None, description="mlflow: tracking URI (default sqlite:///<output_dir>/mlflow.db); "
                                              "wandb: its directory (default runs/<id>)")
    experiment: str = Field("dialsum", description="mlflow experiment / wandb project")


class FinalSpec(Strict):
    """After the dev-based run has chosen everything: each model retrained on train + dev for its chosen number of
    optimizer steps, the dev-fitted ensemble and post-processing applied unchanged, <run-id>-final.csv written."""
    refit: bool = Field(False, description="retrain every model on train + dev (`dialsum run --final`); no dev number "
                                           "exists for the refit models")
    pseudo_label: bool = Field(False, description="also train on the test dialogues with the ensemble's picks as "
                                                  "targets (self-training; writes <run-id>-final-pseudo.csv), and "
                                                  "measure it on dev-report first (its pseudo-labelled dialogues)")

    @model_validator(mode="after")
    def _needs_refit(self):
        if self.pseudo_label and not self.refit:
            raise ValueError("final.pseudo_label needs final.refit: true (pseudo-labels are added to the refit)")
        return self
