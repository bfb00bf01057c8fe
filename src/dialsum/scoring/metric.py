"""The leaderboard metric over a corpus: ROUGE-1/2/L F1 on Korean morphemes, averaged over references, final = mean x
100 (pair scores from dialsum.scoring.rouge, morphemes from dialsum.scoring.tokenize)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dialsum.scoring.rouge import DEFAULT_SEMANTICS, features_many, pair_scores
from dialsum.scoring.tokenize import tokenize_many


@dataclass(frozen=True)
class CorpusScore:
    rouge1: float
    rouge2: float
    rougeL: float
    per_sample: tuple[tuple[float, float, float], ...]

    @property
    def final(self) -> float:
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3 * 100

    def finals(self) -> list[float]:
        """Each sample's own final score; `final` is their mean (what bootstrap intervals resample)."""
        return [(r1 + r2 + rl) / 3 * 100 for r1, r2, rl in self.per_sample]

    def as_dict(self) -> dict[str, float]:
        return {"rouge1": self.rouge1, "rouge2": self.rouge2, "rougeL": self.rougeL, "final": self.final}


def score_corpus(preds: Sequence[str], refs: Sequence[Sequence[str]], semantics: str = DEFAULT_SEMANTICS,
                 tokenizer: str = "mecab") -> CorpusScore:
    """Leaderboard score of predictions against one or more references per sample (mean over references)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} reference lists")
    flat = list(preds) + [r for rs in refs for r in rs]
    toks = dict(zip(flat, tokenize_many(flat, tokenizer)))
    distinct = list(toks)
    feats = dict(zip(distinct, features_many([toks[t] for t in distinct], semantics)))
    feat = feats.__getitem__

    per_sample = []
    for pred, rs in zip(preds, refs):
        if not rs:
            raise ValueError("a sample has no reference")
        h = feat(pred)
        scores = [pair_scores(h, feat(r)) for r in rs]
        per_sample.append(tuple(sum(s[m] for s in scores) / len(scores) for m in range(3)))
    n = max(len(per_sample), 1)
    means = [sum(s[m] for s in per_sample) / n for m in range(3)]
    return CorpusScore(means[0], means[1], means[2], tuple(per_sample))


@dataclass(frozen=True)
class Metric:
    """The leaderboard metric as one object (a run config's `metric` section: ROUGE semantics and morpheme
    tokenizer), what every scorer calls: stages, alignment's reward and keep decision, tuning and the CLI."""
    semantics: str = DEFAULT_SEMANTICS
    tokenizer: str = "mecab"

    @classmethod
    def of(cls, spec) -> Metric:
        """From a MetricSpec, a Metric, or the section as a dict (a stage's keyed inputs)."""
        if isinstance(spec, dict):
            return cls(spec.get("semantics", DEFAULT_SEMANTICS), spec.get("tokenizer", "mecab"))
        return cls(spec.semantics, spec.tokenizer)

    def score(self, preds: Sequence[str], refs: Sequence[Sequence[str]]) -> CorpusScore:
        return score_corpus(list(preds), [list(r) for r in refs], self.semantics, self.tokenizer)

    def final(self, preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
        """The final score (what choosers maximise)."""
        return self.score(preds, refs).final

    def rows(self, preds: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
        """Each row's final score (what per-row choosers, the one-SE rule and bootstrap intervals need)."""
        return self.score(preds, refs).finals()
