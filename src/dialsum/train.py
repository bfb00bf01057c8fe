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
from dialsum.data import Dialogue
from dialsum.io_utils import atomic_write_json
from dialsum.prompts import (AUGMENT_INSTRUCTIONS, IGNORE_INDEX, PromptStyle, encode_example, encode_prompt,
                             stop_token_ids)


@dataclass
class TrainResult:
    adapter_dir: Path
    best_dev_final: float | None
    dev_history: list[dict]
    losses: list[float]


def style_of(cfg: ModelConfig) -> PromptStyle:
    return PromptStyle(cfg.prompt_format, cfg.instruction, cfg.system_prompt)


def encode_input(tokenizer, dialogue: str, cfg: ModelConfig) -> list[int]:
    """What the model reads for one dialogue: the prompt (decoder-only) or the encoder ids (seq2seq)."""
    if cfg.family == "seq2seq":
        from dialsum.seq2seq import encode_source

        return encode_source(tokenizer, dialogue, cfg.source_prefix, cfg.max_input_tokens)
    return encode_prompt(tokenizer, dialogue, style_of(cfg), cfg.max_input_tokens)


def model_stops(tokenizer, generation_eos, cfg: ModelConfig) -> list[int]:
    """The ids generation stops on for this model (see prompts.stop_token_ids): its generation config's eos ids,
    the tokenizer's EOS and, for chat prompts, the template's end-of-turn token. Training targets end with one."""
    return stop_token_ids(tokenizer, generation_eos, style_of(cfg) if cfg.family == "decoder" else None)


def encode_training_example(tokenizer, d: Dialogue, cfg: ModelConfig, stops: list[int],
                            instruction: str | None = None) -> dict:
    if cfg.family == "seq2seq":
        from dialsum.seq2seq import encode_seq2seq_example

        return encode_seq2seq_example(tokenizer, d.dialogue, d.summary, cfg.source_prefix, cfg.max_input_tokens,
                                      cfg.max_new_tokens)
    return encode_example(tokenizer, d.dialogue, d.summary, style_of(cfg), cfg.max_input_tokens, cfg.max_new_tokens,
                          stops, instruction)


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


def dev_scorer(tokenizer, dev: list[Dialogue], cfg: ModelConfig, metric: MetricSpec, stops: list[int],
               batch_size: int = 16):
    """A function model -> metric dict (final, rouge1, rouge2, rougeL) from greedy decoding of the dev subset."""
    from dialsum.hf_generate import generate_hf
    from dialsum.metric import score_corpus

    subset = dev[: cfg.train.eval_subset]
    prompts = [encode_input(tokenizer, d.dialogue, cfg) for d in subset]
    greedy = DecodingSpec(name="greedy")

    def score(model) -> dict:
        outs = generate_hf(model, tokenizer, prompts, greedy, cfg.max_new_tokens, batch_size,
                           extra=generation_extras(tokenizer, cfg), stops=stops)
        preds = [o[0][0] for o in outs]
        s = score_corpus(preds, [[d.summary] for d in subset], metric.semantics, metric.tokenizer)
        return {"dev_final": s.final, "dev_rouge1": s.rouge1, "dev_rouge2": s.rouge2, "dev_rougeL": s.rougeL}

    return score


def train_model(cfg: ModelConfig, base_path: str, train_rows: list[Dialogue], dev_rows: list[Dialogue],
                out_dir: Path, metric: MetricSpec, resume: bool = False, stop_after_steps: int | None = None,
                on_evaluate=None) -> TrainResult:
    """Fine-tune `cfg` on train_rows; the best adapter (by dev score) goes to out_dir/adapter.

    `on_evaluate(step, dev_final)` is called after each evaluation (an Optuna trial reports there and raises
    `optuna.TrialPruned` to stop a hopeless trial)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

    from dialsum.modeling import (check_expected, fit_embeddings, has_cuda, load_model, load_tokenizer,
                                  trainable_token_rows)

    from transformers import set_seed

    set_seed(cfg.train.seed)  # before LoRA init, so the adapter's starting point is the config's, not the process's
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
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
        model = get_peft_model(model, lcfg)
    stops = model_stops(tokenizer, model.generation_config.eos_token_id, cfg)
    train_ds = build_examples(tokenizer, train_rows, cfg, t.seed, stops)
    eval_ds = [encode_training_example(tokenizer, d, cfg, stops) for d in dev_rows[: t.eval_subset]]
    score_dev = dev_scorer(tokenizer, dev_rows, cfg, metric, stops)
    bf16 = cuda and compute_is(cfg, torch.bfloat16)
    fp16 = cuda and compute_is(cfg, torch.float16)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun / accelerate launch: each rank sees 1/world of a step
    steps_per_epoch = math.ceil(len(train_ds) / (t.batch_size * t.grad_accum * world))
    total = t.max_steps if t.max_steps > 0 else math.ceil(steps_per_epoch * t.epochs)
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, num_train_epochs=t.epochs, max_steps=total,
        logging_steps=min(t.logging_steps, total), eval_strategy="steps", eval_steps=min(t.eval_steps, total),
        save_strategy="steps", save_steps=min(t.eval_steps, total), save_total_limit=t.save_total_limit,
        load_best_model_at_end=True, metric_for_best_model="dev_final", greater_is_better=True,
        optim=(t.optim if t.optim != "auto" else ("paged_adamw_8bit" if cuda and method == "qlora" else "adamw_torch")),
        label_smoothing_factor=t.label_smoothing, include_num_input_tokens_seen=True,
        bf16=bf16, fp16=fp16, use_cpu=not cuda, seed=t.seed, report_to=_report_to(), remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False, gradient_checkpointing=False,
        ddp_backend=None if cuda else ("gloo" if world > 1 else None), save_only_model=False,
    )

    class ScoringTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seq2seq = cfg.family == "seq2seq"
            if model.training and t.rdrop_alpha > 0:
                return rdrop_loss(model, inputs, t.rdrop_alpha, t.label_smoothing, seq2seq, num_items_in_batch,
                                  return_outputs)
            if not seq2seq:  # causal LMs divide by num_items_in_batch themselves (and the label smoother shifts)
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # BART/mBART/T5 take num_items_in_batch but ignore it (their loss is a per-micro-batch mean the Trainer
            # then does not divide by gradient accumulation): dialsum computes it, label smoothing included
            out = model(**{k: v for k, v in inputs.items() if k != "labels"})
            loss = token_loss(out.logits, inputs["labels"], t.label_smoothing, num_items_in_batch, shift=False)
            return (loss, out) if return_outputs else loss

        def evaluation_loop(self, *a, **kw):
            output = super().evaluation_loop(*a, **kw)
            prefix = kw.get("metric_key_prefix", "eval")
            output.metrics.update({f"{prefix}_{k}": v for k, v in score_dev(self.model).items()})
            return output

    kill_after = int(os.environ.get("DIALSUM_KILL_AFTER_STEPS", "0")) or None

    class StopAfter(TrainerCallback):
        """Test hooks: end the run abruptly after N steps (checkpoints stay): `stop_after_steps` raises
        KeyboardInterrupt in-process; DIALSUM_KILL_AFTER_STEPS sends this process SIGKILL, like the OOM killer."""

        def on_save(self, args, state, control, **kw):
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                raise KeyboardInterrupt(f"stopped after {state.global_step} steps")
            if kill_after is not None and state.global_step >= kill_after:
                import signal

                os.kill(os.getpid(), signal.SIGKILL)

    class Report(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if on_evaluate is not None and metrics and "eval_dev_final" in metrics:
                on_evaluate(state.global_step, metrics["eval_dev_final"])

    callbacks = [StopAfter(), Report()]
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    if cfg.family == "seq2seq":
        from dialsum.seq2seq import Seq2SeqCollator

        base_cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
        collator = Seq2SeqCollator(tokenizer.pad_token_id, base_cfg.decoder_start_token_id)
    else:
        collator = Collator(tokenizer.pad_token_id)
    trainer = ScoringTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             data_collator=collator, processing_class=tokenizer,
                             callbacks=callbacks)
    last = _last_checkpoint(ckpt_dir) if resume else None
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    adapter_dir = out_dir / "adapter"
    history = trainer.state.log_history
    dev_hist = [{k: v for k, v in h.items() if k in ("step", "eval_dev_final", "eval_loss")}
                for h in history if "eval_dev_final" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    best = trainer.state.best_metric
    result = TrainResult(adapter_dir, best, dev_hist, losses)
    if not trainer.is_world_process_zero():  # one writer: rank 0 saves the adapter and the result
        trainer.accelerator.wait_for_everyone()
        return result
    tmp = out_dir / "adapter.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    tmp.rename(adapter_dir)
    atomic_write_json(out_dir / "train_result.json",
                      {"adapter_dir": str(adapter_dir), "method": method, "best_dev_final": best, "dev_history": dev_hist,
                       "losses": losses, "global_step": trainer.state.global_step, "world_size": world,
                       "epoch": trainer.state.epoch})
    trainer.accelerator.wait_for_everyone()
    return result


def generation_extras(tokenizer, cfg: ModelConfig) -> dict:
    """Model-specific `generate` arguments: mBART starts its output with the target language code."""
    if cfg.lang_code:
        return {"forced_bos_token_id": tokenizer.convert_tokens_to_ids(cfg.lang_code)}
    return {}


def token_loss(logits, labels, smoothing: float, num_items=None, shift: bool = False):
    """Label-smoothed cross-entropy summed over the summary's tokens, divided by `num_items` (the Trainer's count of
    label tokens over the whole accumulated batch, so the loss and its gradient do not grow with gradient
    accumulation) or, without it, by this batch's own count. `shift`: causal LMs predict token i + 1 at i."""
    import torch.nn.functional as F

    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    lp = F.log_softmax(logits.float(), -1)
    tok = -lp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    if smoothing:
        tok = (1 - smoothing) * tok - smoothing * lp.mean(-1)
    denom = num_items if num_items is not None else mask.sum().clamp(min=1)
    return (tok * mask).sum() / denom


def rdrop_loss(model, inputs: dict, alpha: float, smoothing: float, seq2seq: bool, num_items=None,
               return_outputs: bool = False):
    """R-Drop (Liang et al. 2021): two forward passes with different dropout; the mean of their (label-smoothed)
    cross-entropies plus alpha times the symmetric KL between their token distributions over the summary
    positions, both normalised like `token_loss`."""
    import torch.nn.functional as F

    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    a, b = model(**fwd), model(**fwd)
    labels = inputs["labels"]
    ce = (token_loss(a.logits, labels, smoothing, num_items, shift=not seq2seq)
          + token_loss(b.logits, labels, smoothing, num_items, shift=not seq2seq)) / 2
    la, lb = a.logits, b.logits
    if not seq2seq:  # logits at position i predict token i + 1
        la, lb, labels = la[:, :-1], lb[:, :-1], labels[:, 1:]
    mask = (labels != IGNORE_INDEX).unsqueeze(-1)
    pa, pb = F.log_softmax(la.float(), -1), F.log_softmax(lb.float(), -1)
    kl = ((pa.exp() * (pa - pb) + pb.exp() * (pb - pa)) * mask).sum() / 2
    kl = kl / (num_items if num_items is not None else mask.sum().clamp(min=1))
    loss = ce + alpha * kl
    return (loss, a) if return_outputs else loss


def compute_is(cfg: ModelConfig, dtype) -> bool:
    from dialsum.modeling import compute_dtype

    return compute_dtype(cfg.precision) == dtype


def _report_to() -> list[str]:
    try:
        import tensorboard  # noqa: F401
        return ["tensorboard"]
    except ImportError:
        return []


def _last_checkpoint(ckpt_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(get_last_checkpoint(str(ckpt_dir))) if ckpt_dir.is_dir() and get_last_checkpoint(str(ckpt_dir)) else None
