"""ROUGE-consensus (minimum-Bayes-risk) selection: per dialogue, the candidate that agrees most with the others.

utility(i) = weighted mean over the *other* candidates j of mean(R1, R2, RL F1)(hyp=i, ref=j). Identical texts are
merged with their multiplicity (and summed weights), which changes no choice; utilities within 1e-9 of each other are
a tie (float summation order cannot split one), and ties go to the earliest candidate in input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dialsum.metric import features_many, pairwise_matrix
from dialsum.tokenize import tokenize_many


@dataclass(frozen=True)
class Pick:
    fname: str
    text: str
    source: str
    index: int  # position among that fname's candidates, in input order
    utility: float


TIE_TOLERANCE = 1e-9  # utilities within this of the maximum tie; the earliest candidate wins


def mbr_select(texts: Sequence[str], weights: Sequence[float], feats: Sequence, semantics: str) -> tuple[int, float]:
    """Index (into texts) of the consensus choice and its utility. Pure; feats[i] are features of texts[i].

    utility(i) = sum_{j != i} w_j * U(i, j) / sum_{j != i} w_j, for every candidate i (copies included: a copy's own
    weight is what it leaves out, so copies with different weights can differ). Identical texts share one row of the
    pairwise matrix, which changes no number.
    """
    n = len(texts)
    if n == 1:
        return 0, 1.0
    slot: dict[str, int] = {}
    mult: list[float] = []
    reps: list[int] = []
    for i, t in enumerate(texts):
        a = slot.setdefault(t, len(slot))
        if a == len(mult):
            mult.append(0.0)
            reps.append(i)
        mult[a] += weights[i]
    if len(slot) == 1:
        return 0, 1.0
    m = pairwise_matrix([feats[i] for i in reps], semantics).mean(axis=2)
    total = sum(mult)
    weighted = m @ mult  # sum over unique texts b of W_b * U(a, b), own row included
    us = []
    for i, t in enumerate(texts):
        a = slot[t]
        own = weights[i]
        denom = total - own
        us.append(0.0 if denom <= 0 else float((weighted[a] - own * m[a, a]) / denom))
    top = max(us)
    best = next(i for i, u in enumerate(us) if u >= top - TIE_TOLERANCE)  # the earliest of the tied
    return best, us[best]


def ensemble(groups: dict[str, list[tuple[str, str]]], semantics: str, tokenizer: str = "mecab",
             weights: dict[str, float] | None = None, workers: int = 1) -> dict[str, Pick]:
    """groups: fname -> [(text, source), ...] in input order. Returns fname -> Pick."""
    weights = weights or {}
    all_texts = list(dict.fromkeys(t for cands in groups.values() for t, _ in cands))
    toks = tokenize_many(all_texts, tokenizer, workers=workers)
    feat_cache = dict(zip(all_texts, features_many(toks, semantics)))
    out = {}
    for fname, cands in groups.items():
        if not cands:
            continue
        texts = [t for t, _ in cands]
        feats = [feat_cache[t] for t in texts]
        ws = [_weight(src, weights) for _, src in cands]
        i, u = mbr_select(texts, ws, feats, semantics)
        out[fname] = Pick(fname, texts[i], cands[i][1], i, u)
    return out


def _weight(source: str, weights: dict[str, float]) -> float:
    if source in weights:
        return weights[source]
    model = source.split("/", 1)[0]
    return weights.get(model, 1.0)
