"""Preference data from a model's own samples, ranked by the leaderboard metric: which train dialogues are used,
the ranked table (`preferences.csv`: fname, candidate, score, rank), DPO pairs and ranking groups from it.

Pure functions over plain rows; the one file format is read and written here. Only train rows ever enter: the
stage hands in `data.train`, and `check_train_only` refuses a table naming any other fname.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.data import Dialogue
from dialsum.io.files import atomic_write_text, csv_text

COLUMNS = ["fname", "candidate", "score", "rank"]


@dataclass(frozen=True)
class Ranked:
    fname: str
    candidate: str
    score: float  # the leaderboard metric's final (0-100) of the candidate against the dialogue's reference
    rank: int     # 1 = best; equal scores share the better rank


def align_rows(train: list[Dialogue], n: int, seed: int) -> list[Dialogue]:
    """The train dialogues aligned on: a seeded sample of `n` (all when fewer), in train order."""
    if n >= len(train):
        return list(train)
    keep = set(random.Random(seed).sample(range(len(train)), n))
    return [d for i, d in enumerate(train) if i in keep]


def split_heldout(fnames: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(fit, heldout): a seeded share of the dialogues (at least one, never all) kept out of training to measure the
    objective before and after."""
    names = sorted(set(fnames))
    k = min(max(1, round(len(names) * share)), len(names) - 1)
    held = set(random.Random(seed + 1).sample(names, k)) if k > 0 else set()
    return [f for f in names if f not in held], [f for f in names if f in held]


def rank_samples(fname: str, texts: list[str], scores: list[float]) -> list[Ranked]:
    """One dialogue's distinct samples, best first (ties keep sampling order and share a rank)."""
    best: dict[str, float] = {}
    for t, s in zip(texts, scores):
        if t.strip() and t not in best:
            best[t] = s
    order = sorted(best.items(), key=lambda kv: -kv[1])
    out, rank = [], 0
    for i, (t, s) in enumerate(order):
        if i == 0 or s < order[i - 1][1]:
            rank = i + 1
        out.append(Ranked(fname, t, s, rank))
    return out


def groups_of(rows: list[Ranked]) -> dict[str, list[Ranked]]:
    out: dict[str, list[Ranked]] = {}
    for r in rows:
        out.setdefault(r.fname, []).append(r)
    return {f: sorted(g, key=lambda r: (r.rank, -r.score)) for f, g in out.items()}


def dpo_pairs(rows: list[Ranked], min_margin: float, per_row: int) -> list[tuple[str, str, str, float]]:
    """(fname, chosen, rejected, margin): per dialogue, the best against the worst, then the next best against the
    worst, ... while the metric gap is at least `min_margin` (a pair closer than that is noise, not a preference)."""
    out = []
    for f, g in groups_of(rows).items():
        worst = g[-1]
        for good in g[:per_row]:
            if good is not worst and good.score - worst.score >= min_margin:
                out.append((f, good.candidate, worst.candidate, good.score - worst.score))
    return out


def ranking_groups(rows: list[Ranked], min_margin: float) -> dict[str, list[Ranked]]:
    """Dialogues whose samples differ by at least `min_margin` between best and worst, each best first (BRIO)."""
    return {f: g for f, g in groups_of(rows).items() if len(g) >= 2 and g[0].score - g[-1].score >= min_margin}


def write_preferences(path: Path, rows: list[Ranked]) -> None:
    atomic_write_text(path, csv_text(COLUMNS, [[r.fname, r.candidate, repr(r.score), r.rank] for r in rows]))


def read_preferences(path: Path) -> list[Ranked]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != COLUMNS:
                raise DialsumError(f"{path}: columns {reader.fieldnames}, expected {COLUMNS}")
            return [Ranked(r["fname"], r["candidate"], float(r["score"]), int(r["rank"])) for r in reader]
    except (ValueError, KeyError) as e:
        raise DialsumError(f"{path}: not a preferences table ({e})") from None


def check_train_only(rows: list[Ranked], train_fnames: set[str], where: Path) -> None:
    """Preference data is built from train dialogues only; anything else would leak dev/test into training."""
    bad = sorted({r.fname for r in rows} - train_fnames)
    if bad:
        raise DialsumError(f"{where}: preference rows for fnames outside train: {bad[:5]}")
