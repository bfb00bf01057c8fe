"""The reward of alignment is the leaderboard metric itself: each text's final score (ROUGE-1/2/L F1 on morphemes,
x100) against its one train reference, computed by the same `score_corpus` as `dialsum score`, so a reward is
exactly what `dialsum score` prints for that text and reference.

`MetricReward` is the callable TRL's GRPOTrainer calls per batch of completions; it decodes the completion ids the
way generation does and keeps every (fname, completion, reward) it gave, for rewards.csv and the exactness test.
"""
from __future__ import annotations

from pathlib import Path

from dialsum.io.files import atomic_write_text, csv_text
from dialsum.scoring.metric import Metric
from dialsum.scoring.tokenize import tokenize_many


def metric_rewards(texts: list[str], refs: list[str], metric: dict) -> list[float]:
    """Each text's final score against its reference (what `dialsum score` gives a one-row file)."""
    if not texts:
        return []
    return Metric.of(metric).rows(texts, [[r] for r in refs])


def length_penalties(texts: list[str], refs: list[str], tokenizer: str) -> list[float]:
    """|len(text) - len(ref)| / len(ref) in morphemes: GRPO's optional length term."""
    toks = tokenize_many(list(texts) + list(refs), tokenizer)
    n = len(texts)
    return [abs(len(toks[i]) - len(toks[n + i])) / max(1, len(toks[n + i])) for i in range(n)]


class MetricReward:
    """reward(completion) = metric final vs its reference - length_weight x length penalty (0 by default)."""

    __name__ = "leaderboard_metric"  # TRL logs rewards under the function's name

    def __init__(self, tokenizer, metric: dict, length_weight: float = 0.0):
        from dialsum.models.special_tokens import decode_summary

        self.decode = lambda ids: decode_summary(tokenizer, list(ids))
        self.metric = metric
        self.length_weight = length_weight
        self.log: list[tuple[int, str, str, float, float]] = []  # (step, fname, completion, metric, reward)

    def __call__(self, prompts, completions, completion_ids=None, reference=None, fname=None, trainer_state=None,
                 **_) -> list[float]:
        texts = [self.decode(ids) for ids in completion_ids] if completion_ids is not None else list(completions)
        scores = metric_rewards(texts, list(reference), self.metric)
        rewards = list(scores)
        if self.length_weight:
            pen = length_penalties(texts, list(reference), Metric.of(self.metric).tokenizer)
            rewards = [s - self.length_weight * p for s, p in zip(scores, pen)]
        step = trainer_state.global_step if trainer_state is not None else 0
        self.log += [(step, f, t, s, r) for f, t, s, r in zip(fname, texts, scores, rewards)]
        return rewards

    def resume(self, path: Path, checkpoint: str | None) -> None:
        """After a kill: keep the rewards logged up to the checkpoint training resumes from (later ones are redone)."""
        import csv

        if checkpoint is None or not Path(path).is_file():
            return
        upto = int(Path(checkpoint).name.rsplit("-", 1)[-1])
        with open(path, newline="", encoding="utf-8") as f:
            self.log = [(int(r["step"]), r["fname"], r["completion"], float(r["metric"]), float(r["reward"]))
                        for r in csv.DictReader(f) if int(r["step"]) < upto]

    def saver(self, path: Path):
        """A TrainerCallback writing the log at every checkpoint, so a resumed stage keeps the rewards before it."""
        from transformers import TrainerCallback

        reward = self

        class _Save(TrainerCallback):
            def on_save(self, args, state, control, **kw):
                reward.write(path)

        return _Save()

    def write(self, path: Path) -> None:
        atomic_write_text(path, csv_text(["step", "fname", "completion", "metric", "reward"],
                                         [[st, f, t, repr(s), repr(r)] for st, f, t, s, r in self.log]))
