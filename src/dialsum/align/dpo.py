"""DPO (decoder-only) with TRL's DPOTrainer: continues the SFT LoRA on the same base, with the SFT policy as the
reference (TRL's frozen `ref` copy of the adapter), on pairs of the model's own samples ranked by the metric.

Prompts and completions are dialsum's own encoding (the model's prompt format, BOS and end-of-turn handling that
SFT trained on), handed to TRL already tokenized: `_prepare_dataset` (TRL 1.16) would otherwise re-tokenize text
with the tokenizer's defaults, a second BOS on the Llama-3 checkpoints and no end-of-turn token on chat formats.
"""
from __future__ import annotations

from pathlib import Path

from dialsum.align.common import NothingToTrain, Prepared, Setup
from dialsum.align.preferences import dpo_pairs
from dialsum.config import AlignSpec, ModelConfig
from dialsum.io.data import Dialogue


def encode_pair(tokenizer, cfg: ModelConfig, d: Dialogue, chosen: str, rejected: str, stops: list[int]) -> dict:
    """{prompt_ids, chosen_ids, rejected_ids}: the prompt as generation reads it, each completion as SFT's target
    (ending in the end token the model was trained to write), except a sample that generation cut at
    `max_new_tokens` (it never wrote an end token: its log-probability is that of its tokens alone, and DPO must not
    teach the model to stop, or not to stop, where the limit cut it)."""
    from dialsum.models.encoding import encode_training_example
    from dialsum.models.prompts import IGNORE_INDEX

    def split(text: str) -> tuple[list[int], list[int]]:
        ex = encode_training_example(tokenizer, Dialogue(d.fname, d.dialogue, text), cfg, stops)
        k = next(i for i, x in enumerate(ex["labels"]) if x != IGNORE_INDEX)
        own = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(own) >= cfg.max_new_tokens - 1:  # as long as the limit allows: the limit, not the model, ended it
            return ex["input_ids"][:k], own[: cfg.max_new_tokens]
        return ex["input_ids"][:k], ex["input_ids"][k:]

    p1, c = split(chosen)
    p2, r = split(rejected)
    assert p1 == p2, "a prompt's encoding must not depend on its completion"
    return {"prompt_ids": p1, "chosen_ids": c, "rejected_ids": r}


def pair_dataset(tokenizer, cfg: ModelConfig, rows: dict[str, Dialogue], pairs, stops: list[int]):
    from datasets import Dataset

    enc = [encode_pair(tokenizer, cfg, rows[f], c, r, stops) for f, c, r, _ in pairs]
    return Dataset.from_list(enc)


def make_trainer(model, tokenizer, cfg: ModelConfig, spec: AlignSpec, train_ds, eval_ds, ckpt_dir: Path,
                 callbacks: list):
    from trl import DPOConfig, DPOTrainer

    from dialsum.align.common import ResumesPolicy, trainer_kwargs
    from dialsum.align.policy import trl_keeps_the_policy

    class Pretokenized(ResumesPolicy, DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # already {prompt_ids, chosen_ids, rejected_ids} in dialsum's encoding

    args = DPOConfig(**trainer_kwargs(spec, cfg, ckpt_dir), beta=spec.beta, max_length=None,
                     per_device_eval_batch_size=spec.batch_size)
    with trl_keeps_the_policy(model):
        return Pretokenized(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                            processing_class=tokenizer, callbacks=callbacks)


def heldout_margin(trainer, eval_ds) -> dict:
    """Mean implicit reward margin beta x [(log pi - log ref)(chosen) - (log pi - log ref)(rejected)] and accuracy
    on held-out pairs (0 and 0 for the SFT policy itself, which is its own reference)."""
    m = trainer.evaluate(eval_dataset=eval_ds)
    return {"margin": m.get("eval_rewards/margins"), "accuracy": m.get("eval_rewards/accuracies"),
            "loss": m.get("eval_loss")}


CURVE = {"loss": "loss", "reward_margin": "rewards/margins", "reward_accuracy": "rewards/accuracies",
         "reward_chosen": "rewards/chosen", "reward_rejected": "rewards/rejected"}


def prepare(s: Setup) -> Prepared | NothingToTrain:
    pairs = dpo_pairs(s.prefs or [], s.spec.min_margin, s.spec.pairs_per_row)
    fit, held = set(s.fit_names), set(s.held_names)
    train_pairs, held_pairs = [p for p in pairs if p[0] in fit], [p for p in pairs if p[0] in held]
    counts = {"pairs": len(train_pairs), "heldout_pairs": len(held_pairs)}
    if not train_pairs:
        return NothingToTrain(f"no preference pairs with a metric gap >= {s.spec.min_margin}", counts)
    train_ds = pair_dataset(s.tokenizer, s.cfg, s.by_fname, train_pairs, s.stops)
    held_ds = pair_dataset(s.tokenizer, s.cfg, s.by_fname, held_pairs, s.stops) if held_pairs else None
    trainer = make_trainer(s.model, s.tokenizer, s.cfg, s.spec, train_ds, held_ds, s.ckpt, s.callbacks)
    return Prepared(trainer, (lambda: heldout_margin(trainer, held_ds)) if held_ds is not None else dict, counts)
