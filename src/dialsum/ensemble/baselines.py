"""What "learned nothing" scores, so every report can say whether a model beat it: a constant summary (the train
summary the others agree with most, the same consensus the ensemble uses, over a seeded sample of train) and a lead
summary (a dialogue's first turns). Pure functions: texts in, texts out."""
from __future__ import annotations

import random
from typing import Sequence

from dialsum.ensemble.consensus import Voting, prepare

CONSTANT_POOL = 300  # train summaries the constant is chosen among (all pairs: 45k ROUGE pairs at most)
LEAD_TURNS = 2


def constant_summary(train_summaries: Sequence[str], semantics: str, tokenizer: str = "mecab",
                     pool: int = CONSTANT_POOL, seed: int = 0) -> str:
    """The train summary with the highest mean metric against the other train summaries of a seeded sample."""
    texts = list(dict.fromkeys(train_summaries))
    if len(texts) > pool:
        texts = random.Random(seed).sample(texts, pool)
    [d] = prepare({"train": [(t, "train") for t in texts]}, ["train"], semantics, tokenizer)
    return d.texts[Voting((1.0,)).pick(d)]


def lead_summary(dialogue: str, turns: int = LEAD_TURNS) -> str:
    """The dialogue's first `turns` turns, speaker tags kept, on one line."""
    return " ".join(line.strip() for line in dialogue.splitlines()[:turns] if line.strip())
