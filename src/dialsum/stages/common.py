"""What the stage functions share when they run: the dev rows a key names, the trained weights a generating stage
reads, a callback named in a context, a score with its per-row values."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.engine.core import resolve
from dialsum.io.data import CompetitionData, Dialogue, load_competition


def load_data(context: dict) -> CompetitionData:
    """The run's data as a stage reads it: the data folder, cut to the smoke mode's rows when the run has a limit."""
    return load_competition(Path(context["data_dir"]), limit=context.get("limit"), seed=context.get("limit_seed", 0))


def dev_rows(data: CompetitionData, fnames: list[str]) -> list[Dialogue]:
    names = set(fnames)
    return [d for d in data.dev if d.fname in names]


def callback_of(entry: dict | None):
    """A callback named in a stage's context, `{"fn": "module:factory", "args": {...}}`, built in this process: how
    a caller (e.g. a tuning trial's reporter) reaches the training child without training code importing it."""
    return resolve(entry["fn"])(entry.get("args") or {}) if entry else None


def weights_of(context: dict) -> Path | None:
    """The trained weights a generating stage reads: an align stage's when it kept them, else a train stage's
    (`adapter/`, or `model/` after full fine-tuning), or an adapter given from anywhere."""
    if context.get("aligned"):
        res = json.loads((Path(context["aligned"]) / "align_result.json").read_text(encoding="utf-8"))
        if res.get("kept"):
            return Path(res["weights"])
    if context.get("trained"):
        from dialsum.models.loading import trained_weights

        return trained_weights(Path(context["trained"]))
    return Path(context["adapter"]) if context.get("adapter") else None


def score_of(preds: dict[str, str], rows: list[Dialogue], metric) -> dict:
    """The leaderboard score of preds on rows, with each row's own final score (`per_dialogue`, in row order): what
    the report's bootstrap intervals and paired comparisons resample."""
    from dialsum.scoring.metric import Metric

    s = Metric.of(metric).score([preds.get(d.fname, "") for d in rows], [[d.summary] for d in rows])
    return {**s.as_dict(), "per_dialogue": s.finals()}
