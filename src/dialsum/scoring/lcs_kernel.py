"""Compiled kernel for pltrdy's summary-level ROUGE-L over all ordered pairs of one dialogue's candidates.

pltrdy's union LCS needs the LCS itself (which words it holds, as pltrdy's own backtrack reconstructs it), not only
its length, so no off-the-shelf C routine gives it. This kernel is that loop in numba: per ordered pair (hyp i,
ref j), the union over (reference sentence, hypothesis sentence) pairs of the reconstructed LCS's word types, with
the DP table and backtrack rule of `rouge` 1.0.1 (`_lcs`, `_recon_lcs`): diagonal on a match, else up when
table[i-1][j] > table[i][j-1], else left. It returns union sizes; the F1 arithmetic stays in numpy, so the numbers
equal the pure-Python path (metric.lcs_words) bit for bit. Compiled once and cached on disk (`cache=True`).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def union_lcs_sizes(tokens, sent_start, sent_len, cand_first, cand_nsent, n_vocab):  # pragma: no cover - compiled
    """tokens: int32 word ids of every sentence, concatenated; sentence s is tokens[sent_start[s]:+sent_len[s]];
    candidate c owns sentences cand_first[c] .. cand_first[c] + cand_nsent[c] - 1. Returns int64 [k, k] union sizes
    U[i, j] for hypothesis i against reference j."""
    k = cand_first.shape[0]
    out = np.zeros((k, k), dtype=np.int64)
    stamp = np.zeros(n_vocab, dtype=np.int64)  # stamp[w] == tag: w is in the current union
    seen_h = np.zeros(n_vocab, dtype=np.int64)  # seen_h[w] == tag: w occurs in hypothesis i
    tag = 0
    max_len = 1
    for s in range(sent_len.shape[0]):
        if sent_len[s] > max_len:
            max_len = sent_len[s]
    table = np.zeros((max_len + 1, max_len + 1), dtype=np.int32)
    for i in range(k):
        for j in range(k):
            tag += 1
            if cand_nsent[i] == 0 or cand_nsent[j] == 0:
                continue
            # the words both texts share: the union can never hold more
            for s in range(cand_first[i], cand_first[i] + cand_nsent[i]):
                for t in range(sent_start[s], sent_start[s] + sent_len[s]):
                    seen_h[tokens[t]] = tag
            common = 0
            for s in range(cand_first[j], cand_first[j] + cand_nsent[j]):
                for t in range(sent_start[s], sent_start[s] + sent_len[s]):
                    w = tokens[t]
                    if seen_h[w] == tag:
                        seen_h[w] = -tag  # count each shared word once
                        common += 1
            size = 0
            if common > 0:
                for rs in range(cand_first[j], cand_first[j] + cand_nsent[j]):
                    x0 = sent_start[rs]
                    n = sent_len[rs]
                    for hs in range(cand_first[i], cand_first[i] + cand_nsent[i]):
                        y0 = sent_start[hs]
                        m = sent_len[hs]
                        for a in range(1, n + 1):
                            xa = tokens[x0 + a - 1]
                            for b in range(1, m + 1):
                                if xa == tokens[y0 + b - 1]:
                                    table[a, b] = table[a - 1, b - 1] + 1
                                else:
                                    up = table[a - 1, b]
                                    left = table[a, b - 1]
                                    table[a, b] = up if up >= left else left
                        a = n
                        b = m
                        while a > 0 and b > 0:
                            xa = tokens[x0 + a - 1]
                            if xa == tokens[y0 + b - 1]:
                                if stamp[xa] != tag:
                                    stamp[xa] = tag
                                    size += 1
                                a -= 1
                                b -= 1
                            elif table[a - 1, b] > table[a, b - 1]:
                                a -= 1
                            else:
                                b -= 1
                    if size == common:
                        break
            out[i, j] = size
    return out


def warm() -> None:
    """Compile (or load the cached compilation) now, e.g. before timing."""
    z = np.zeros(1, dtype=np.int64)
    union_lcs_sizes(np.zeros(1, dtype=np.int32), z, z + 1, z, z + 1, 1)
