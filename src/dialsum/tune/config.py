"""The tuning YAML (`dialsum tune --config configs/tune.yaml`) as typed objects: the study, its storage, sampler and
pruner, and what each space samples. Same loader rules as a run config (`--set`, one-line validation errors)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from dialsum.config import Strict, _format_validation, apply_sets, read_yaml
from dialsum.errors import DialsumError


def _low_high(v: tuple, name: str) -> tuple:
    """A sampled range is (low, high) with low <= high."""
    if v[0] > v[1]:
        raise ValueError(f"{name} ({v[0]}, {v[1]}): low above high")
    return v


class SamplerSpec(Strict):
    name: Literal["tpe", "random"] = "tpe"
    seed: int = Field(42, ge=0)


class PrunerSpec(Strict):
    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(0, ge=0)


class TrainSpace(Strict):
    """What a training trial samples: LoRA rank from ranks vLLM serves, a log-uniform learning rate, alpha as a
    multiple of the rank, dropout and epochs (uniform)."""
    lora_r: list[int] = Field(default_factory=lambda: [8, 16, 32])
    learning_rate: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (1e-4, 5e-3)
    alpha_multiple: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0, 2.0], min_length=1)
    dropout: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.0, 0.1)
    epochs: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (2, 6)

    @field_validator("learning_rate", "dropout", "epochs")
    @classmethod
    def _ordered(cls, v, info):
        return _low_high(v, info.field_name)

    @field_validator("lora_r")
    @classmethod
    def _ranks(cls, v):
        bad = [r for r in v if r not in (8, 16, 32, 64, 128)]
        if bad or not v:
            raise ValueError(f"lora_r {v}: ranks must come from 8, 16, 32, 64, 128 (what vLLM serves)")
        return v


class AlignSpace(Strict):
    """What an align trial samples for the model's configured `align.method`: beta (DPO's beta, GRPO's KL
    coefficient; unused by rank) and the alignment learning rate, both log-uniform."""
    beta: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.02, 0.5)
    learning_rate: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (1e-5, 1e-3)

    @field_validator("beta", "learning_rate")
    @classmethod
    def _ordered(cls, v, info):
        return _low_high(v, info.field_name)


class InferSpace(Strict):
    """What an inference trial samples over a finished run's candidates: each source's weight in the consensus
    (0 = out), the utility, and the post-processing rules and length cap."""
    weights: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0], min_length=1)
    utility: list[Literal["mean", "rouge1", "rouge2", "rougeL"]] = Field(default_factory=lambda: ["mean"])
    postprocess: bool = True


class HeartbeatSpec(Strict):
    """RDB storage only: each worker beats every `interval` s; a trial whose worker is silent for `grace` s (killed,
    machine lost) is marked failed and retried, at most twice."""
    interval: int = Field(30, ge=1)
    grace: int = Field(90, ge=2)


class TuneConfig(Strict):
    study: str = Field("tune", pattern=r"^[A-Za-z0-9._-]+$")
    run_config: Path
    model: str | None = Field(None, description="train/align space: the model to tune (default: the run config's "
                                                 "first)")
    space: Literal["train", "align", "infer"] = "train"
    storage: str | None = Field(None, description="default: runs/tune/<study>/journal.log (journal file)")
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    train: TrainSpace = TrainSpace()
    align: AlignSpace = AlignSpace()
    infer: InferSpace = InferSpace()
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="parameter sets tried first")
    heartbeat: HeartbeatSpec = HeartbeatSpec()


def load_tune_config(path: Path, sets: list[str] | None = None) -> TuneConfig:
    path = Path(path).resolve()
    raw = apply_sets(read_yaml(path), sets)
    if "run_config" in raw:
        raw["run_config"] = str((path.parent / str(raw["run_config"])).resolve())
    try:
        return TuneConfig.model_validate(raw)
    except ValidationError as e:
        raise DialsumError(_format_validation(path, e)) from None


def clip_enqueued(tc: TuneConfig, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An enqueued trial fitted to the search space it joins: a number outside its range is clipped to the nearest
    end, a choice that is not offered is dropped (Optuna samples it); the notes say what changed, one each."""
    ranges: dict[str, tuple] = {}
    choices: dict[str, list] = {}
    if tc.space == "train":
        ranges = {"learning_rate": tc.train.learning_rate, "dropout": tc.train.dropout, "epochs": tc.train.epochs}
        choices = {"lora_r": tc.train.lora_r, "alpha_multiple": tc.train.alpha_multiple}
    elif tc.space == "align":
        ranges = {"beta": tc.align.beta, "align_learning_rate": tc.align.learning_rate}
    out, notes = {}, []
    for name, value in params.items():
        if name in ranges and isinstance(value, (int, float)):
            low, high = ranges[name]
            clipped = min(max(value, low), high)
            if clipped != value:
                notes.append(f"{name} {value} clipped to {clipped} (the space is [{low}, {high}])")
            out[name] = clipped
        elif name in choices and value not in choices[name]:
            notes.append(f"{name} {value} dropped (the space offers {choices[name]}; Optuna samples it)")
        else:
            out[name] = value
    return out, notes
