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


# C0 control characters (and DEL) but tab and newline (a carriage return becomes a newline): a byte-level vocabulary
# holds a token for each, so a model can emit one (the tiny ones did); a NUL in a candidate made its CSV unreadable
_CONTROL = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}


def tag_ids(tokenizer) -> set[int]:
    """The tags' ids in this tokenizer (remembered on it until its vocabulary grows: decoding asks once per row)."""
    size = len(tokenizer)
    known = getattr(tokenizer, "_dialsum_tag_ids", None)
    if known is None or known[0] != size:
        vocab = tokenizer.get_vocab()
        known = (size, {vocab[t] for t in TAGS if t in vocab})
        tokenizer._dialsum_tag_ids = known
    return known[1]


def decode_summary(tokenizer, ids: list[int]) -> str:
    """Decode generated ids, dropping special tokens but never a tag (even one registered as special), and control
    characters a summary never holds (a CSV, a submission, a metric would choke on a NUL)."""
    keep = tag_ids(tokenizer)
    special = set(tokenizer.all_special_ids) - keep
    text = tokenizer.decode([i for i in ids if i not in special], skip_special_tokens=False)
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROL).strip()
