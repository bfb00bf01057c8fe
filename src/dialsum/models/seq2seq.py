"""Encoder-decoder models (KoBART, T5, mBART): how a dialogue and its summary become encoder and decoder ids.

The encoder reads `source_prefix + dialogue` (T5 checkpoints expect a task prefix, BART ones none); the decoder's
labels are the summary ending in EOS, so the loss is on the summary only, as for the decoder-only formats. Where a
tokenizer adds no special tokens of its own (KoBART's and the tiny model's byte-level BPE), the source is wrapped in
BOS/EOS and the target ends in EOS here; tokenizers that add their own (T5's EOS, mBART's language codes) are left
to do so.
"""
from __future__ import annotations

from dialsum.models.prompts import IGNORE_INDEX


def _adds_nothing(tokenizer) -> bool:
    probe = "가"
    return tokenizer(probe, add_special_tokens=True)["input_ids"] == tokenizer(probe, add_special_tokens=False)["input_ids"]


def encode_source(tokenizer, dialogue: str, prefix: str, max_tokens: int) -> list[int]:
    """Encoder ids of the dialogue, cut at its end to fit max_tokens (the closing special token kept)."""
    ids = tokenizer(prefix + dialogue, add_special_tokens=True)["input_ids"]
    if _adds_nothing(tokenizer):
        head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids = head + ids[: max(1, max_tokens - len(head) - len(tail))] + tail
        return ids
    if len(ids) > max_tokens:
        ids = ids[: max_tokens - 1] + ids[-1:]
    return ids


def encode_target(tokenizer, summary: str, max_tokens: int) -> list[int]:
    ids = tokenizer(text_target=summary, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if not ids or ids[-1] != eos:
        ids = ids + [eos]
    if len(ids) > max_tokens:
        ids = ids[: max_tokens - 1] + [eos]
    return ids


def encode_seq2seq_example(tokenizer, dialogue: str, summary: str, prefix: str, max_input: int,
                           max_target: int) -> dict[str, list[int]]:
    src = encode_source(tokenizer, dialogue, prefix, max_input)
    return {"input_ids": src, "attention_mask": [1] * len(src), "labels": encode_target(tokenizer, summary, max_target)}


class Seq2SeqCollator:
    """Pads encoder ids (pad id) and mask (0) and the labels (-100), each to its own longest row; with a decoder
    start id, also the decoder's inputs (labels shifted right), so the loss can be computed outside the model
    (the Trainer's label smoothing takes the labels away from it)."""

    def __init__(self, pad_id: int, decoder_start: int | None = None):
        self.pad_id = pad_id
        self.decoder_start = decoder_start

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        out = {}
        for key, fill in (("input_ids", self.pad_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
            width = max(len(r[key]) for r in rows)
            out[key] = torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows])
        if self.decoder_start is not None:
            labels = out["labels"]
            dec = torch.full_like(labels, self.pad_id)
            dec[:, 0] = self.decoder_start
            dec[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE_INDEX, self.pad_id)
            out["decoder_input_ids"] = dec
        return out
