"""How uncertain a dev number is: bootstrap intervals over dialogues and paired comparisons of two systems.

The leaderboard's final score is the mean over dialogues of each dialogue's (R1 + R2 + RL) / 3 x 100, so a
dialogue's own score is a sufficient statistic: resampling dialogues is resampling those numbers, never texts (10,000
resamples of 500 dialogues take milliseconds). A paired comparison resamples the same dialogues for both systems
(the difference of their per-dialogue scores), and its p-value comes from a sign-flip permutation test: under "no
difference" each dialogue's difference is as likely negative as positive. Pure numpy; seeded, so the same seed
gives the same interval.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

SAMPLES = 10_000
SEED = 0
LEVEL = 0.95


def resample_indices(n: int, samples: int = SAMPLES, seed: int = SEED) -> np.ndarray:
    """[samples, n] the dialogues drawn (with replacement) in each bootstrap resample."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n)) if n else np.zeros((samples, 0), dtype=int)


def resampled_means(values: Sequence[float], samples: int = SAMPLES, seed: int = SEED) -> np.ndarray:
    """The mean of `values` in each bootstrap resample of its positions."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return np.zeros(samples)
    return v[resample_indices(len(v), samples, seed)].mean(axis=1)


def interval(values: Sequence[float], samples: int = SAMPLES, seed: int = SEED,
             level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-dialogue scores."""
    means = resampled_means(values, samples, seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def permutation_p(diffs: Sequence[float], samples: int = SAMPLES, seed: int = SEED) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(diffs) != 0, with the +1 correction (never 0)."""
    d = np.asarray(diffs, dtype=np.float64)
    if not len(d):
        return 1.0
    rng = np.random.default_rng(seed + 1)  # not the bootstrap's stream
    observed = abs(d.mean())
    signs = rng.integers(0, 2, size=(samples, len(d)), dtype=np.int8) * 2 - 1
    flipped = np.abs(signs @ d) / len(d)
    return float((1 + np.count_nonzero(flipped >= observed - 1e-12)) / (samples + 1))


@dataclass(frozen=True)
class Comparison:
    """A vs B on the same dialogues: both scores, their paired difference A - B with its interval, the p-value."""
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.diff:+.2f} [{self.ci_low:+.2f}, {self.ci_high:+.2f}], p = {self.p_value:.3f}"


def compare(a: Sequence[float], b: Sequence[float], samples: int = SAMPLES, seed: int = SEED,
            level: float = LEVEL) -> Comparison:
    """Paired bootstrap of mean(a) - mean(b) over the same dialogues (a[i], b[i] score dialogue i)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same dialogues: {len(a)} vs {len(b)}")
    d = a - b
    low, high = interval(d, samples, seed, level)
    return Comparison(float(a.mean()) if len(a) else 0.0, float(b.mean()) if len(b) else 0.0,
                      float(d.mean()) if len(d) else 0.0, low, high, permutation_p(d, samples, seed), len(d))


def with_interval(values: Sequence[float], samples: int = SAMPLES, seed: int = SEED) -> dict:
    """{"final", "ci_low", "ci_high", "n"} of per-dialogue scores: what the report prints for a dev-report number."""
    low, high = interval(values, samples, seed)
    v = np.asarray(values, dtype=np.float64)
    return {"final": float(v.mean()) if len(v) else 0.0, "ci_low": low, "ci_high": high, "n": len(v)}


@dataclass(frozen=True)
class Gain:
    """A choice's held-out gain: the mean per-row gain, its standard error, and whether it is kept (beyond one SE)."""
    gain: float
    se: float
    keep: bool
    why: str


def one_se_gain(per_row_gain: Sequence[float]) -> Gain:
    """dialsum's rule for every choice made on dev-select: keep the change only when the mean of its per-row gain
    exceeds one standard error of that mean (so a gain a small dev set cannot tell from noise keeps the simpler
    choice)."""
    g = np.asarray(per_row_gain, dtype=np.float64)
    n = len(g)
    gain = float(g.mean()) if n else 0.0
    se = float(g.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    if gain <= 1e-9:
        return Gain(gain, se, False, "does not help" if gain < -1e-9 else "changes nothing")
    if gain <= se + 1e-9:
        return Gain(gain, se, False, f"gain within one standard error ({gain:+.3f} <= {se:.3f}): noise")
    return Gain(gain, se, True, f"gain beyond one standard error ({gain:+.3f} > {se:.3f})")


def kfold(n: int, k: int, seed: int) -> list[np.ndarray]:
    """k held-out folds of range(n), seeded: the one fold split every dev-select choice is judged with."""
    idx = np.random.default_rng(seed).permutation(n)
    return [np.sort(idx[i::k]) for i in range(k)]
