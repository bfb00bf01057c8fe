"""`rank`: BRIO-style training (Liu et al., ACL 2022) for seq2seq and decoder models alike: the model's
length-normalised log-probability of its own samples must follow their metric order, with a margin per rank gap,
plus the MLE term on the reference so it stays a summariser.

    loss = sum_{i better than j} max(0, s_j - s_i + (rank_j - rank_i) * rank_margin) / pairs  +  mle_weight * CE(ref)

TRL 1.16's DPOTrainer has no encoder-decoder path (it concatenates prompt and completion into one decoder
sequence), so seq2seq models are aligned with this loss, through the plain transformers Trainer (checkpoints,
resume) and dialsum's own encoding and collators.
"""
from __future__ import annotations

from pathlib import Path

from dialsum.align.common import NothingToTrain, Prepared, Setup
from dialsum.align.preferences import Ranked, ranking_groups
from dialsum.config import AlignSpec, ModelConfig
from dialsum.io.data import Dialogue


def group_examples(tokenizer, cfg: ModelConfig, rows: dict[str, Dialogue], groups: dict[str, list[Ranked]],
                   stops: list[int]) -> list[dict]:
    """One example per dialogue: its reference and its ranked samples, each encoded as a training target."""
    from dialsum.models.encoding import encode_training_example

    out = []
    for f, g in groups.items():
        d = rows[f]
        enc = [encode_training_example(tokenizer, Dialogue(f, d.dialogue, r.candidate), cfg, stops) for r in g]
        out.append({"ref": encode_training_example(tokenizer, d, cfg, stops), "cands": enc,
                    "ranks": [r.rank for r in g]})
    return out


class GroupCollator:
    """Flattens dialogues into one padded batch: rows tagged with their group, rank (0 for the reference) and
    whether they are the reference."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        flat, group, rank, is_ref = [], [], [], []
        for gi, ex in enumerate(examples):
            for e, r in [(ex["ref"], 0)] + list(zip(ex["cands"], ex["ranks"])):
                flat.append({k: e[k] for k in ("input_ids", "labels", "attention_mask") if k in e})
                group.append(gi)
                rank.append(r)
                is_ref.append(r == 0)
        for f in flat:
            f.setdefault("attention_mask", [1] * len(f["input_ids"]))
        batch = self.inner(flat)
        batch.update(group=torch.tensor(group), rank=torch.tensor(rank), is_ref=torch.tensor(is_ref))
        return batch


def sequence_scores(model, batch: dict, seq2seq: bool):
    """(mean log-prob of each row's target tokens, summed token log-probs, token counts)."""
    import torch.nn.functional as F

    from dialsum.models.prompts import IGNORE_INDEX

    fwd = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "decoder_input_ids")}
    logits = model(**fwd).logits
    labels = batch["labels"]
    if not seq2seq:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    lp = F.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    n = mask.sum(-1).clamp(min=1)
    return lp.sum(-1) / n, lp.sum(-1), n


def ranking_loss(scores, group, rank, is_ref, margin: float):
    """Mean hinge over every ordered pair of samples of a dialogue whose ranks differ."""
    import torch

    cand = ~is_ref
    s, g, r = scores[cand], group[cand], rank[cand]
    better = (g[:, None] == g[None, :]) & (r[:, None] < r[None, :])
    if not better.any():
        return scores.sum() * 0.0
    gap = (r[None, :] - r[:, None]).float() * margin
    hinge = torch.clamp(s[None, :] - s[:, None] + gap, min=0)
    return hinge[better].mean()


def brio_loss(model, batch: dict, spec: AlignSpec, seq2seq: bool) -> tuple:
    mean_lp, sum_lp, n = sequence_scores(model, batch, seq2seq)
    rl = ranking_loss(mean_lp, batch["group"], batch["rank"], batch["is_ref"], spec.rank_margin)
    ref = batch["is_ref"]
    mle = -(sum_lp[ref].sum() / n[ref].sum())
    return rl + spec.mle_weight * mle, rl, mle


def make_trainer(model, tokenizer, cfg: ModelConfig, spec: AlignSpec, train_examples: list[dict], ckpt_dir: Path,
                 callbacks: list):
    from transformers import Trainer, TrainingArguments

    from dialsum.align.common import trainer_kwargs

    seq2seq = cfg.family == "seq2seq"
    if seq2seq:
        from dialsum.models.seq2seq import Seq2SeqCollator

        base_cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
        inner = Seq2SeqCollator(tokenizer.pad_token_id, base_cfg.decoder_start_token_id)
    else:
        from dialsum.models.training import Collator

        inner = Collator(tokenizer.pad_token_id)

    class BrioTrainer(Trainer):
        # the loss is a per-micro-batch mean: the Trainer must divide it by gradient accumulation (it would not, as
        # the model's forward takes **kwargs and it then assumes a loss normalised over the whole accumulated batch)
        loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, rl, mle = brio_loss(model, inputs, spec, seq2seq)
            self._dialsum_parts = (float(rl.detach()), float(mle.detach()))
            return (loss, None) if return_outputs else loss

        def log(self, logs, *a, **kw):
            if "loss" in logs and getattr(self, "_dialsum_parts", None):
                logs = {**logs, "ranking_loss": self._dialsum_parts[0], "mle_loss": self._dialsum_parts[1]}
            return super().log(logs, *a, **kw)

    args = TrainingArguments(**trainer_kwargs(spec, cfg, ckpt_dir), remove_unused_columns=False)
    return BrioTrainer(model=model, args=args, train_dataset=train_examples, data_collator=GroupCollator(inner),
                       processing_class=tokenizer, callbacks=callbacks)


def heldout_ranking(trainer, examples: list[dict], spec: AlignSpec, seq2seq: bool) -> dict:
    """Mean ranking loss (and MLE) over held-out dialogues, the model in eval mode."""
    import torch

    model = trainer.model
    was = model.training
    model.eval()
    rls, mles = [], []
    with torch.no_grad():
        for i in range(0, len(examples), max(1, spec.batch_size)):
            batch = trainer.data_collator(examples[i:i + spec.batch_size])
            dev = next(model.parameters()).device
            _, rl, mle = brio_loss(model, {k: v.to(dev) for k, v in batch.items()}, spec, seq2seq)
            rls.append(float(rl))
            mles.append(float(mle))
    model.train(was)
    return {"ranking_loss": sum(rls) / max(1, len(rls)), "mle_loss": sum(mles) / max(1, len(mles))}


CURVE = {"loss": "loss", "ranking_loss": "ranking_loss", "mle_loss": "mle_loss"}


def prepare(s: Setup) -> Prepared | NothingToTrain:
    groups = ranking_groups(s.prefs or [], s.spec.min_margin)
    fit, held = set(s.fit_names), set(s.held_names)
    train_g = {f: g for f, g in groups.items() if f in fit}
    held_g = {f: g for f, g in groups.items() if f in held}
    counts = {"groups": len(train_g), "heldout_groups": len(held_g)}
    if not train_g:
        return NothingToTrain(f"no dialogue whose samples differ by >= {s.spec.min_margin}", counts)
    examples = group_examples(s.tokenizer, s.cfg, s.by_fname, train_g, s.stops)
    held_ex = group_examples(s.tokenizer, s.cfg, s.by_fname, held_g, s.stops)
    trainer = make_trainer(s.model, s.tokenizer, s.cfg, s.spec, examples, s.ckpt, s.callbacks)
    seq2seq = s.cfg.family == "seq2seq"
    return Prepared(trainer, (lambda: heldout_ranking(trainer, held_ex, s.spec, seq2seq)) if held_ex else dict,
                    counts)
