"""What every alignment method shares: the interface a method implements (`prepare(Setup) -> Prepared`, or
`NothingToTrain` with the reason), the Trainer arguments an align spec means (checkpoints to resume from, CPU/GPU
precision as SFT chose it) and the last checkpoint to resume."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dialsum.config import AlignSpec, ModelConfig
from dialsum.io.data import Dialogue
from dialsum.logs import progress_enabled
from dialsum.scoring.metric import Metric


@dataclass
class Setup:
    """What a method's `prepare` is given: the SFT policy, the aligned train rows split into fit and held-out
    fnames, the ranked samples (dpo, rank), and where its trainer checkpoints."""
    model: object
    tokenizer: object
    cfg: ModelConfig
    by_fname: dict[str, Dialogue]
    fit_names: list[str]
    held_names: list[str]
    prefs: list | None
    stops: list[int]
    ckpt: Path
    callbacks: list
    metric: dict
    out: Path

    @property
    def spec(self) -> AlignSpec:
        return self.cfg.align


@dataclass
class Prepared:
    """A method ready to train: its trainer, the held-out measurement of its own objective (taken before and
    after), counts for the result, and what to do once training ends."""
    trainer: object
    measure: Callable[[], dict]
    counts: dict = field(default_factory=dict)
    after_training: Callable[[], None] = lambda: None


@dataclass
class NothingToTrain:
    """No usable training signal (e.g. every sample scored alike): generation keeps the SFT weights."""
    reason: str
    counts: dict = field(default_factory=dict)


def dev_score(preds: dict[str, str], rows: list[Dialogue], metric: dict) -> dict:
    s = Metric.of(metric).score([preds[d.fname] for d in rows], [[d.summary] for d in rows])
    return {**s.as_dict(), "n": len(rows), "per_dialogue": s.finals()}


def trainer_kwargs(spec: AlignSpec, cfg: ModelConfig, ckpt_dir: Path) -> dict:
    """TrainingArguments fields (TRL's configs subclass them): max_steps, checkpoints every `save_steps` (a killed
    stage resumes from the last, optimizer and scheduler included), no evaluation loop (dialsum scores itself)."""
    import torch

    from dialsum.hardware import has_cuda
    from dialsum.models.loading import compute_dtype

    cuda = has_cuda()
    dtype = compute_dtype(cfg.precision)
    return dict(
        output_dir=str(ckpt_dir), max_steps=spec.steps, learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size, gradient_accumulation_steps=spec.grad_accum,
        warmup_steps=spec.warmup_ratio, lr_scheduler_type="cosine", logging_steps=spec.logging_steps,
        save_strategy="steps", save_steps=spec.save_steps, save_total_limit=2, eval_strategy="no",
        seed=spec.seed, use_cpu=not cuda, bf16=cuda and dtype == torch.bfloat16, fp16=cuda and dtype == torch.float16,
        report_to=[], dataloader_num_workers=0, disable_tqdm=not progress_enabled(), gradient_checkpointing=False,
        optim="paged_adamw_8bit" if cuda and cfg.method == "qlora" else "adamw_torch",
    )


class ResumesPolicy:
    """A Trainer mixin: resuming loads the policy's own adapter too.

    transformers 5.19's `_load_from_checkpoint` loads only the adapters in a checkpoint's sub-folders when it has
    any (TRL's frozen `ref/`) and never the `default` adapter saved at its root, while step, optimizer and scheduler
    are restored: a killed DPO/GRPO stage would go on from the SFT weights and silently lose every step before the
    kill. After the library's load, the root adapter is loaded into the active one."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.model if model is None else model
        root = Path(resume_from_checkpoint)
        saved = any((root / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin"))
        if saved and hasattr(model, "load_adapter") and hasattr(model, "active_adapters"):
            active = model.active_adapters[0]
            model.load_adapter(str(root), active, is_trainable=True)
            model.set_adapter(active)


def last_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete checkpoint (a half-written one a kill left is removed): as SFT resumes."""
    from dialsum.models.training import last_checkpoint as complete

    found = complete(Path(ckpt_dir))
    return str(found) if found else None


def curve(log_history: list[dict], keys: dict[str, str]) -> list[dict]:
    """The training curve: per logged step, the named metrics (`{our_name: trainer_log_key}`) that were logged."""
    out = []
    for h in log_history:
        row = {name: h[k] for name, k in keys.items() if k in h}
        if row:
            out.append({"step": h.get("step"), **row})
    return out


def free_memory() -> None:
    """Give back what a deleted trainer held now, not when the garbage collector next runs (the optimizer state and
    model form reference cycles); on a GPU, return the cached blocks too, so the next engine measures a free card."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
