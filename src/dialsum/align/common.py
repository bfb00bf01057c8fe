"""What every alignment method shares: the Trainer arguments an align spec means (checkpoints to resume from,
CPU/GPU precision as SFT chose it) and the last checkpoint to resume."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import AlignSpec, ModelConfig


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
        report_to=[], dataloader_num_workers=0, disable_tqdm=False, gradient_checkpointing=False,
        optim="paged_adamw_8bit" if cuda and cfg.method == "qlora" else "adamw_torch",
    )


def last_checkpoint(ckpt_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(ckpt_dir)) if Path(ckpt_dir).is_dir() else None


def curve(log_history: list[dict], keys: dict[str, str]) -> list[dict]:
    """The training curve: per logged step, the named metrics (`{our_name: trainer_log_key}`) that were logged."""
    out = []
    for h in log_history:
        row = {name: h[k] for name, k in keys.items() if k in h}
        if row:
            out.append({"step": h.get("step"), **row})
    return out
