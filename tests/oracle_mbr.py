"""The MBR definition, computed pair by pair: the oracle dialsum's vectorised consensus rule
(dialsum.ensemble.Voting over all-pairs matrices) is tested against.

utility(i) = sum_{j != i} w_j U(i, j) / sum_{j != i} w_j with U the mean of R1/R2/RL F1 (hypothesis i, reference j),
for every candidate i (copies included); the earliest candidate within 1e-9 of the best wins.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from dialsum.scoring.rouge import features, pair_scores
from dialsum.scoring.tokenize import get_tokenizer

TIE_TOLERANCE = 1e-9


class Pick(NamedTuple):
    text: str
    source: str
    index: int
    utility: float


def definition_pick(texts: Sequence[str], weights: Sequence[float], feats: Sequence) -> tuple[int, float]:
    """(index, utility) of the MBR choice by the definition, one pair_scores call per ordered pair."""
    n = len(texts)
    if n == 1:
        return 0, 1.0
    us = []
    for i in range(n):
        num = sum(weights[j] * sum(pair_scores(feats[i], feats[j])) / 3 for j in range(n) if j != i)
        den = sum(weights[j] for j in range(n) if j != i)
        us.append(num / den if den > 0 else 0.0)
    best = next(i for i, u in enumerate(us) if u >= max(us) - TIE_TOLERANCE)
    return best, us[best]


def ensemble(groups: dict[str, list[tuple[str, str]]], semantics: str, tokenizer: str = "mecab") -> dict[str, Pick]:
    """Uniform-weight MBR per fname of groups (fname -> [(text, source), ...])."""
    tok = get_tokenizer(tokenizer)
    cache: dict[str, object] = {}
    out = {}
    for fname, cands in groups.items():
        texts = [t for t, _ in cands]
        feats = [cache.setdefault(t, features(tok(t), semantics)) for t in texts]
        i, u = definition_pick(texts, [1.0] * len(texts), feats)
        out[fname] = Pick(texts[i], cands[i][1], i, u)
    return out
