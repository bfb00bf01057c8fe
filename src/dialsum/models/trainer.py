"""The Trainer dialsum fine-tunes with: the Hugging Face Trainer, with the loss dialsum needs (R-Drop, seq2seq label
smoothing divided the way gradient accumulation expects) and evaluation by the leaderboard metric on generated dev
summaries, which picks the best checkpoint and drives early stopping."""
from __future__ import annotations

from transformers import Trainer, TrainerCallback

from dialsum.config import ModelConfig
from dialsum.models.losses import rdrop_loss, token_loss


def from_rank0(obj):
    """`obj` as rank 0 has it, on every rank of a torch.distributed group (unchanged in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ScoringTrainer(Trainer):
    """`score_dev(model) -> {"dev_final": ..., ...}` runs at every evaluation (rank 0 decodes and scores; every rank
    gets its numbers, so the best checkpoint and early stopping agree)."""

    def __init__(self, cfg: ModelConfig, score_dev, **kw):
        super().__init__(**kw)
        self.cfg, self.score_dev = cfg, score_dev

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        t, seq2seq = self.cfg.train, self.cfg.family == "seq2seq"
        if model.training and t.rdrop_alpha > 0:
            return rdrop_loss(model, inputs, t.rdrop_alpha, t.label_smoothing, seq2seq, num_items_in_batch,
                              return_outputs)
        if not seq2seq:  # causal LMs divide by num_items_in_batch themselves (and the label smoother shifts)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # BART/mBART/T5 take num_items_in_batch but ignore it (their loss is a per-micro-batch mean the Trainer then
        # does not divide by gradient accumulation): dialsum computes it, label smoothing included
        out = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = token_loss(out.logits, inputs["labels"], t.label_smoothing, num_items_in_batch, shift=False)
        return (loss, out) if return_outputs else loss

    def evaluation_loop(self, *a, **kw):
        output = super().evaluation_loop(*a, **kw)
        prefix = kw.get("metric_key_prefix", "eval")
        scores = from_rank0(self.score_dev(self.model) if self.is_world_process_zero() else None)
        output.metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        return output


class ReportEvaluations(TrainerCallback):
    """Calls `on_evaluate(step, dev_final)` after each evaluation (a tuning trial's reporter; its pruner may stop)."""

    def __init__(self, report):
        self.report = report

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if self.report is not None and metrics and "eval_dev_final" in metrics:
            self.report(state.global_step, metrics["eval_dev_final"])
