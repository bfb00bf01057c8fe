"""Training losses dialsum computes itself: label-smoothed token cross-entropy normalised by the Trainer's label-token
count over the accumulated batch (seq2seq models ignore that count), and R-Drop. Pure torch functions."""
from __future__ import annotations

from dialsum.models.prompts import IGNORE_INDEX


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
