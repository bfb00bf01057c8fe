"""ROUGE-consensus (minimum-Bayes-risk) selection: per dialogue, the candidate that agrees most with the others.

utility(i) = weighted mean over the *other* candidates j of mean(R1, R2, RL F1)(hyp=i, ref=j). Identical texts are
merged with their multiplicity (and summed weights), which changes no choice; utilities are rounded to 12 decimals
so that float summation order cannot break a tie, and ties go to the earliest candidate in input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dialsum.metric import features, pairwise_matrix
from dialsum.tokenize import tokenize_many


@dataclass(frozen=True)
class Pick:
    fname: str
    text: str
    source: str
    index: int  # position among that fname's candidates, in input order
    utility: float


def mbr_select(texts: Sequence[str], weights: Sequence[float], feats: Sequence, semantics: str) -> tuple[int, float]:
    """Index (into texts) of the consensus choice and its utility. Pure; feats[i] are features of texts[i]."""
    n = len(texts)
    if n == 1:
        return 0, 1.0
    first: dict[str, int] = {}
    mult: dict[str, float] = {}
    for i, t in enumerate(texts):
        first.setdefault(t, i)
        mult[t] = mult.get(t, 0.0) + weights[i]
    uniq = list(first)
    if len(uniq) == 1:
        return 0, 1.0
    m = pairwise_matrix([feats[first[t]] for t in uniq], semantics).mean(axis=2)
    w = [mult[t] for t in uniq]
    total = sum(w)
    best, best_u = 0, -1.0
    for a, t in enumerate(uniq):
        own = weights[first[t]]  # one copy of itself is not an "other" candidate
        denom = total - own
        if denom <= 0:
            u = 0.0
        else:
            u = sum(w[b] * m[a, b] for b in range(len(uniq)) if b != a) + (w[a] - own) * m[a, a]
            u = round(u / denom, 12)
        if u > best_u or (u == best_u and first[t] < first[uniq[best]]):
            best, best_u = a, u
    return first[uniq[best]], best_u


def ensemble(groups: dict[str, list[tuple[str, str]]], semantics: str, tokenizer: str = "mecab",
             weights: dict[str, float] | None = None, workers: int = 1) -> dict[str, Pick]:
    """groups: fname -> [(text, source), ...] in input order. Returns fname -> Pick."""
    weights = weights or {}
    all_texts = list(dict.fromkeys(t for cands in groups.values() for t, _ in cands))
    toks = dict(zip(all_texts, tokenize_many(all_texts, tokenizer, workers=workers)))
    feat_cache: dict[str, object] = {}
    out = {}
    for fname, cands in groups.items():
        if not cands:
            continue
        texts = [t for t, _ in cands]
        feats = []
        for t in texts:
            f = feat_cache.get(t)
            if f is None:
                f = feat_cache[t] = features(toks[t], semantics)
            feats.append(f)
        ws = [_weight(src, weights) for _, src in cands]
        i, u = mbr_select(texts, ws, feats, semantics)
        out[fname] = Pick(fname, texts[i], cands[i][1], i, u)
    return out


def _weight(source: str, weights: dict[str, float]) -> float:
    if source in weights:
        return weights[source]
    model = source.split("/", 1)[0]
    return weights.get(model, 1.0)
