"""QLoRA supervised fine-tuning of one model: summary-only loss, dev scoring by generation, best adapter kept.

The Hugging Face Trainer does the loop (so `accelerate launch` / `torchrun` scale it out, checkpoints resume with
optimizer and scheduler state, TensorBoard logs). At every evaluation, a dev subset is greedy-decoded and scored
with the leaderboard metric; that score (`eval_dev_final`) picks the best checkpoint and drives early stopping.
"""
from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from dialsum.config import DecodingSpec, MetricSpec, ModelConfig
from dialsum.io.data import Dialogue
from dialsum.io.files import atomic_write_json
from dialsum.logs import log, progress_enabled
from dialsum.models.encoding import encode_input, encode_training_example, generation_extras, model_stops
from dialsum.models.prompts import AUGMENT_INSTRUCTIONS, IGNORE_INDEX


@dataclass
class TrainResult:
    weights_dir: Path  # adapter/ (LoRA, QLoRA) or model/ (full fine-tuning)
    best_dev_final: float | None
    dev_history: list[dict]
    losses: list[float]


def build_examples(tokenizer, rows: list[Dialogue], cfg: ModelConfig, seed: int, stops: list[int]) -> list[dict]:
    """Encoded training rows; with augmentation `mixed`, each row once per instruction template (x5)."""
    if cfg.family == "seq2seq":
        out = [encode_training_example(tokenizer, r, cfg, stops) for r in rows]
        random.Random(seed).shuffle(out)
        return out
    instructions = AUGMENT_INSTRUCTIONS if cfg.train.augment == "mixed" else (cfg.instruction,)
    out = [encode_training_example(tokenizer, r, cfg, stops, ins) for r in rows for ins in instructions]
    random.Random(seed).shuffle(out)
    return out


class Collator:
    """Right-pads input_ids (pad id), labels (-100) and attention_mask to the longest row of the batch."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        fill = {"input_ids": self.pad_id, "labels": IGNORE_INDEX, "attention_mask": 0}
        return {k: torch.tensor([r[k] + [v] * (width - len(r[k])) for r in rows]) for k, v in fill.items()}


def step_counter():
    """A TrainerCallback recording the step training resumed from (0 for a fresh start) and the optimizer steps this
    process ran: what proves a resume continued where the kill left it instead of starting again."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        resumed_from, ran = 0, 0

        def on_train_begin(self, args, state, control, **kw):  # after the checkpoint's state was loaded
            self.resumed_from = state.global_step

        def on_step_end(self, args, state, control, **kw):
            self.ran += 1

    return StepCounter()


def dev_scorer(tokenizer, dev: list[Dialogue], cfg: ModelConfig, metric: MetricSpec, stops: list[int],
               batch_size: int = 16):
    """A function model -> metric dict (final, rouge1, rouge2, rougeL) from greedy decoding of the dev subset."""
    from dialsum.models.hf_backend import generate_hf
    from dialsum.scoring.metric import Metric

    subset = dev[: cfg.train.eval_subset]
    prompts = [encode_input(tokenizer, d.dialogue, cfg) for d in subset]
    greedy = DecodingSpec(name="greedy")

    def score(model) -> dict:
        outs = generate_hf(model, tokenizer, prompts, greedy, cfg.max_new_tokens, batch_size,
                           extra=generation_extras(tokenizer, cfg), stops=stops)
        preds = [o[0][0] for o in outs]
        s = Metric.of(metric).score(preds, [[d.summary] for d in subset])
        return {"dev_final": s.final, "dev_rouge1": s.rouge1, "dev_rouge2": s.rouge2, "dev_rougeL": s.rougeL}

    return score


def trainable_model(cfg: ModelConfig, base_path: str):
    """(tokenizer, model) exactly as training starts: the base at the configured quantisation (fp32 master weights
    for full fine-tuning), fresh tag rows, peft's k-bit preparation and the LoRA adapter. The memory plan's tests
    count its tensors."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from dialsum.hardware import has_cuda
    from dialsum.models.loading import (check_expected, fit_embeddings, lean_adapter_saves, load_model, load_tokenizer,
                                        trainable_token_rows)

    tokenizer = load_tokenizer(base_path, cfg)
    method = cfg.method
    # full fine-tuning keeps fp32 master weights (bf16/fp16 only autocast): in bf16 most AdamW updates at lr 5e-5
    # round to nothing, and fp16 weights cannot be unscaled at all; LoRA's own parameters are fp32 (peft upcasts them)
    model = load_model(base_path, cfg, quantization=None if method == "qlora" else "none",
                       master_fp32=method == "full")
    check_expected(cfg, tokenizer, model)
    new_ids = fit_embeddings(model, tokenizer)  # the competition's tags, new to this checkpoint's vocabulary
    t = cfg.train
    cuda = has_cuda()
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing and cuda)
    elif t.gradient_checkpointing and cuda:
        model.gradient_checkpointing_enable()
    if method != "full":
        lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=cfg.target_modules,
                          task_type="SEQ_2_SEQ_LM" if cfg.family == "seq2seq" else "CAUSAL_LM",
                          trainable_token_indices=trainable_token_rows(model, new_ids))  # only fresh rows
        model = lean_adapter_saves(get_peft_model(model, lcfg))
    return tokenizer, model


def train_model(cfg: ModelConfig, base_path: str, train_rows: list[Dialogue], dev_rows: list[Dialogue],
                out_dir: Path, metric: MetricSpec, resume: bool = False, on_evaluate=None,
                callbacks: list | None = None, fixed_steps: int | None = None) -> TrainResult:
    """Fine-tune `cfg` on train_rows; the best weights (by dev score) go to out_dir/adapter (LoRA, QLoRA) or
    out_dir/model (full fine-tuning).

    `on_evaluate(step, dev_final)` is called after each evaluation (an Optuna trial reports there and raises
    `optuna.TrialPruned` to stop a hopeless trial); `callbacks` are extra TrainerCallbacks (e.g. dialsum.faults').
    `fixed_steps`: a final refit, exactly that many optimizer steps with no evaluation and no early stopping (nothing
    is left to choose), the last weights kept. The fnames trained on go to out_dir/trained_rows.json."""
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments

    from dialsum.models.trainer import ReportEvaluations, ScoringTrainer

    from dialsum.hardware import has_cuda
    from dialsum.models.loading import quantized_layers

    from transformers import set_seed

    set_seed(cfg.train.seed)  # before LoRA init, so the adapter's starting point is the config's, not the process's
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    tokenizer, model = trainable_model(cfg, base_path)
    t = cfg.train
    cuda = has_cuda()
    method = cfg.method
    stops = model_stops(tokenizer, model.generation_config.eos_token_id, cfg)
    train_ds = build_examples(tokenizer, train_rows, cfg, t.seed, stops)
    eval_ds = [] if fixed_steps else [encode_training_example(tokenizer, d, cfg, stops)
                                      for d in dev_rows[: t.eval_subset]]
    score_dev = dev_scorer(tokenizer, dev_rows, cfg, metric, stops)
    bf16 = cuda and compute_is(cfg, torch.bfloat16)
    fp16 = cuda and compute_is(cfg, torch.float16)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun / accelerate launch: each rank sees 1/world of a step
    steps_per_epoch = math.ceil(len(train_ds) / (t.batch_size * t.grad_accum * world))
    total = fixed_steps or (t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.epochs))
    evaluate = "no" if fixed_steps else "steps"
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, num_train_epochs=t.epochs, max_steps=total,
        logging_steps=min(t.logging_steps, total), eval_strategy=evaluate, eval_steps=min(t.eval_steps, total),
        save_strategy="steps", save_steps=min(t.eval_steps, total), save_total_limit=t.save_total_limit,
        load_best_model_at_end=not fixed_steps, metric_for_best_model=None if fixed_steps else "dev_final",
        greater_is_better=None if fixed_steps else True,
        optim=(t.optim if t.optim != "auto" else ("paged_adamw_8bit" if cuda and method == "qlora" else "adamw_torch")),
        label_smoothing_factor=t.label_smoothing, include_num_input_tokens_seen=True,
        bf16=bf16, fp16=fp16, use_cpu=not cuda, seed=t.seed, report_to=_report_to(), remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=not progress_enabled(), gradient_checkpointing=False,
        ddp_backend=None if cuda else ("gloo" if world > 1 else None), save_only_model=False,
    )

    counter = step_counter()
    callbacks = [ReportEvaluations(on_evaluate), counter, *(callbacks or [])]
    if t.early_stopping_patience and not fixed_steps:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    if cfg.family == "seq2seq":
        from dialsum.models.seq2seq import Seq2SeqCollator

        base_cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
        collator = Seq2SeqCollator(tokenizer.pad_token_id, base_cfg.decoder_start_token_id)
    else:
        collator = Collator(tokenizer.pad_token_id)
    trainer = ScoringTrainer(cfg, score_dev, model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=collator, processing_class=tokenizer,
                             callbacks=callbacks)
    last = last_checkpoint(ckpt_dir) if resume else None
    if last is not None:
        log(f"train {cfg.name}: resuming from {last.name} (its weights, optimizer and scheduler)")
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    weights_dir = out_dir / ("model" if method == "full" else "adapter")  # a whole model is not an adapter
    history = trainer.state.log_history
    dev_hist = [{k: v for k, v in h.items() if k in ("step", "eval_dev_final", "eval_loss")}
                for h in history if "eval_dev_final" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    best = trainer.state.best_metric
    result = TrainResult(weights_dir, best, dev_hist, losses)
    if not trainer.is_world_process_zero():  # one writer: rank 0 saves the adapter and the result
        trainer.accelerator.wait_for_everyone()
        return result
    tmp = weights_dir.with_name(weights_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if weights_dir.exists():
        shutil.rmtree(weights_dir)
    tmp.rename(weights_dir)
    atomic_write_json(out_dir / "trained_rows.json", {"fnames": sorted({r.fname for r in train_rows}),
                                                      "rows": len(train_rows), "fixed_steps": fixed_steps})
    atomic_write_json(out_dir / "train_result.json",
                      {"weights_dir": str(weights_dir), "method": method, "best_dev_final": best, "dev_history": dev_hist,
                       "losses": losses, "global_step": trainer.state.global_step, "world_size": world,
                       "resumed_from_step": counter.resumed_from, "steps_this_process": counter.ran,
                       "base_quantization": quantized_layers(trainer.model),
                       "epoch": trainer.state.epoch})
    trainer.accelerator.wait_for_everyone()
    return result


def compute_is(cfg: ModelConfig, dtype) -> bool:
    from dialsum.models.loading import compute_dtype

    return compute_dtype(cfg.precision) == dtype


def _report_to() -> list[str]:
    try:
        import tensorboard  # noqa: F401
        return ["tensorboard"]
    except ImportError:
        return []


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint-N folder the Trainer finished writing (trainer_state.json is the last file it writes);
    newer folders a kill left half-written are removed, so a resume never reads one (transformers' own
    get_last_checkpoint takes the highest N, complete or not)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    numbered = [p for p in ckpt_dir.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    for p in sorted(numbered, key=lambda p: int(p.name.rsplit("-", 1)[-1]), reverse=True):
        if (p / "trainer_state.json").is_file():
            return p
        log(f"{p}: half-written by an interrupted save (no trainer_state.json): removed")
        shutil.rmtree(p, ignore_errors=True)
    return None