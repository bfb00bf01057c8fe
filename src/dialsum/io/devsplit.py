"""The honest dev protocol: dev is split once, seeded and stratified by topic, into two disjoint parts.

`dev-select` is everything that chooses (checkpoints, ensemble membership and weights, post-processing rules, the
length cap, tuning); `dev-report` is only ever scored, so its number predicts the leaderboard.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from dialsum.io.data import Dialogue


@dataclass(frozen=True)
class DevSplit:
    select: tuple[str, ...]
    report: tuple[str, ...]

    def rows(self, dev: list[Dialogue], part: str) -> list[Dialogue]:
        names = set(self.select if part == "select" else self.report)
        return [d for d in dev if d.fname in names]

    def as_dict(self) -> dict:
        return {"select": list(self.select), "report": list(self.report)}


def split_dev(dev: list[Dialogue], select_ratio: float, seed: int) -> DevSplit:
    """Rows ordered by (topic, seeded shuffle), then dealt so that every prefix holds `select_ratio` of select rows:
    each topic is split in that ratio up to one row, and the whole split is exact. Both parts keep dev's order."""
    rng = random.Random(seed)
    order = list(range(len(dev)))
    rng.shuffle(order)
    order.sort(key=lambda i: dev[i].topic or "")  # stable: shuffled within each topic
    chosen = set()
    for pos, i in enumerate(order):
        if int((pos + 1) * select_ratio) > int(pos * select_ratio):
            chosen.add(i)
    select = tuple(d.fname for i, d in enumerate(dev) if i in chosen)
    report = tuple(d.fname for i, d in enumerate(dev) if i not in chosen)
    return DevSplit(select, report)
