"""Tokens as characters, so that ROUGE's overlaps run in C (rapidfuzz's bit-parallel LCS).

Two facts make the whole metric run in C: the LCS of two token strings is ROUGE-L's LCS, and the LCS of two sequences
sorted in one common order is the size of their multiset intersection (of their set intersection when each is
de-duplicated), i.e. ROUGE-N's overlap. So a text's features are a few strings with one character per token (or
bigram), and the characters mean something only within the batch of texts encoded together: features of different
batches are re-encoded together before they are compared. Pure numpy; imports nothing from dialsum.
"""
from __future__ import annotations

import itertools
from typing import Sequence

FIRST = 0x100
USABLE = 0x110000 - FIRST - 0x800  # code points from FIRST, minus the surrogate block (not str characters)
BATCHES = itertools.count(1)


def as_text(ranks) -> str:
    """The string whose characters are the given ranks (uint32 array), one distinct character per rank."""
    import numpy as np

    points = ranks.astype(np.uint32) + np.uint32(FIRST)
    points[points >= 0xD800] += np.uint32(0x800)
    return points.tobytes().decode("utf-32-le")


def encode_batch(seqs: Sequence[Sequence[str]], distinct: bool) -> tuple[list[str], list[str], list, int]:
    """Per sequence: its code string, its codes sorted, its bigrams' codes sorted (both de-duplicated when
    `distinct`); and the batch number. Python touches each distinct token once; per-position work is numpy's."""
    import numpy as np

    batch = next(BATCHES)
    flat = list(itertools.chain.from_iterable(seqs))
    vocab = list(dict.fromkeys(flat))
    if len(vocab) > USABLE:
        raise ValueError(f"{len(vocab)} distinct tokens in one batch; at most {USABLE} can be encoded")
    table = dict(zip(vocab, as_text(np.arange(len(vocab), dtype=np.uint32))))
    joined = "".join(map(table.__getitem__, flat))
    bounds = list(itertools.accumulate(map(len, seqs), initial=0))
    codes = [joined[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    n = len(seqs)
    if not flat:
        return codes, [""] * n, [""] * n, batch
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    ranks = points - np.uint32(FIRST) - np.where(points >= 0xE000, np.uint32(0x800), np.uint32(0))
    seg = np.repeat(np.arange(n, dtype=np.int64), np.diff(np.asarray(bounds, dtype=np.int64)))
    uni, uni_bounds = sorted_segments(ranks, seg, n, distinct, len(vocab))
    uni_text = as_text(uni)
    within = seg[:-1] == seg[1:]
    wide = np.uint64 if len(vocab) ** 2 >= 1 << 32 else np.uint32
    keys = (ranks[:-1].astype(wide) * wide(len(vocab)) + ranks[1:])[within]  # a bigram's key, exactly
    n_uniq, inverse = dense_ranks(keys, len(vocab) ** 2)
    if n_uniq <= USABLE:
        bi, bi_bounds = sorted_segments(inverse, seg[:-1][within], n, distinct, n_uniq)
        bi_text = as_text(bi)
        bigrams = [bi_text[a:b] for a, b in zip(bi_bounds[:-1], bi_bounds[1:])]
    else:  # too many distinct bigrams for characters: sorted integer keys (rapidfuzz compares them as exactly)
        bi, bi_bounds = sorted_segments(keys, seg[:-1][within], n, distinct, int(keys.max()) + 1)
        values = bi.tolist()
        bigrams = [values[a:b] for a, b in zip(bi_bounds[:-1], bi_bounds[1:])]
    return codes, [uni_text[a:b] for a, b in zip(uni_bounds[:-1], uni_bounds[1:])], bigrams, batch


def dense_ranks(keys, size: int):
    """(number of distinct keys, each key's rank among them): np.unique's inverse, by one sort of key and position
    packed into one integer where they fit (faster than np.unique's indirect sort)."""
    import numpy as np

    kbits, pbits = max(size - 1, 1).bit_length(), max(len(keys) - 1, 1).bit_length()
    if not len(keys) or kbits + pbits > 64:
        uniq, inverse = np.unique(keys, return_inverse=True)
        return len(uniq), inverse.astype(np.uint32)
    packed = np.sort((keys.astype(np.uint64) << np.uint64(pbits)) | np.arange(len(keys), dtype=np.uint64))
    sorted_keys = packed >> np.uint64(pbits)
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    inverse = np.empty(len(keys), dtype=np.uint32)
    inverse[(packed & np.uint64((1 << pbits) - 1)).astype(np.int64)] = np.cumsum(new) - 1
    return int(new.sum()), inverse


def sorted_segments(values, seg, n: int, distinct: bool, size: int):
    """Values (each < size) sorted within each segment, de-duplicated when `distinct`; and the segment bounds."""
    import numpy as np

    vbits, sbits = max(size - 1, 1).bit_length(), max(n - 1, 1).bit_length()
    if vbits + sbits <= 64:  # segment and value share one integer key: one plain sort
        dt = np.uint32 if vbits + sbits <= 32 else np.uint64
        key = np.sort((seg.astype(dt) << dt(vbits)) | values.astype(dt))
        seg, values = key >> dt(vbits), key & dt((1 << vbits) - 1)
    else:
        order = np.lexsort((values, seg))
        seg, values = seg[order], values[order]
    if distinct and len(values):
        keep = np.ones(len(values), dtype=bool)
        keep[1:] = (values[1:] != values[:-1]) | (seg[1:] != seg[:-1])
        seg, values = seg[keep], values[keep]
    bounds = [0] + np.cumsum(np.bincount(seg.astype(np.int64), minlength=n)).tolist()
    return values, bounds
