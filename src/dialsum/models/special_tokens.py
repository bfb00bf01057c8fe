"""The competition's speaker tags and PII masks as atomic tokens in every tokenizer, kept through decoding.

Summaries must say `#Person1#`, so the tag has to come out of `decode` intact. Tags are added as plain (non-special)
added tokens, which `skip_special_tokens` leaves alone; and because a real checkpoint may already list them among its
*special* tokens (where `skip_special_tokens=True` would delete them), `decode_summary` drops only the truly special
ids (BOS/EOS/PAD/role markers) itself and never a tag.
"""
from __future__ import annotations

SPEAKER_TAGS = [f"#Person{i}#" for i in range(1, 8)]
MASK_TAGS = ["#PhoneNumber#", "#Address#", "#DateOfBirth#", "#PassportNumber#", "#SSN#", "#CardNumber#",
             "#CarNumber#", "#Email#"]
TAGS = SPEAKER_TAGS + MASK_TAGS


def ensure_tags(tokenizer) -> list[int]:
    """Add every tag the tokenizer does not hold as one token; returns the ids of the tokens added (to resize the
    model's embeddings and train those rows)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in TAGS if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing)
    return [tokenizer.convert_tokens_to_ids(t) for t in missing]


def tag_ids(tokenizer) -> set[int]:
    vocab = tokenizer.get_vocab()
    return {vocab[t] for t in TAGS if t in vocab}


def decode_summary(tokenizer, ids: list[int]) -> str:
    """Decode generated ids, dropping special tokens but never a tag (even one registered as special)."""
    keep = tag_ids(tokenizer)
    special = set(tokenizer.all_special_ids) - keep
    return tokenizer.decode([i for i in ids if i not in special], skip_special_tokens=False).strip()
