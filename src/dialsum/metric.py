"""The leaderboard metric: ROUGE-1/2/L F1 on Korean morphemes, averaged over references, final = mean x 100.

Two reference semantics, both exact (tests compare them to the libraries to 1e-12):
  * "rouge-score": `rouge_score.RougeScorer(['rouge1','rouge2','rougeL'])` given the morphemes as tokens
    (n-gram counts with multiplicity, LCS over the whole summary).
  * "pltrdy": `rouge` 1.0.1 `Rouge().get_scores(hyp, ref)` on space-joined morphemes (sentences split on '.',
    n-grams counted as sets, summary-level union LCS); an empty hypothesis scores 0 instead of raising.

Texts are turned into `features` once; every score is then a pure function of two feature objects, which is what
makes the all-pairs matrices used by the ensemble cheap (see `pairwise_matrix`). The LCS runs in C via rapidfuzz's
bit-parallel `LCSseq` on tokens interned as characters; pltrdy's union LCS needs the LCS itself, which comes from a
bit-parallel table on Python ints (one int per column) and pltrdy's own tie-breaking.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Sequence

from rapidfuzz.distance import LCSseq

from dialsum.tokenize import tokenize_many

SEMANTICS = ("pltrdy", "rouge-score")
DEFAULT_SEMANTICS = "pltrdy"

# ---------------------------------------------------------------- token interning (for C-speed LCS)
_CODES: dict[str, str] = {}


def _code(tok: str) -> str:
    c = _CODES.get(tok)
    if c is None:
        i = 0x100 + len(_CODES)
        if i >= 0xD800:  # skip the surrogate block, which cannot be a str character
            i += 0x800
        c = _CODES[tok] = chr(i)
    return c


# ---------------------------------------------------------------- features
@dataclass(frozen=True)
class RougeScoreFeatures:
    semantics: ClassVar[str] = "rouge-score"
    tokens: tuple[str, ...]
    code: str
    unigrams: Counter
    bigrams: Counter


@dataclass(frozen=True)
class PltrdyFeatures:
    semantics: ClassVar[str] = "pltrdy"
    sentences: tuple[tuple[str, ...], ...]  # words per sentence, as pltrdy splits them
    unigrams: frozenset
    bigrams: frozenset
    n_word_types: int


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def pltrdy_sentences(text: str) -> list[str]:
    """pltrdy's own sentence split: on every '.', whitespace collapsed, zero-length pieces dropped."""
    return [" ".join(s.split()) for s in text.split(".") if len(s) > 0]


def features(tokens: Sequence[str], semantics: str):
    """Precompute what scoring needs from one tokenised text under one semantics."""
    return get_semantics(semantics).features(tokens)


# ---------------------------------------------------------------- rouge-score semantics
def _f_rs(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _rs_ngram(hyp: Counter, ref: Counter) -> float:
    small, big = (hyp, ref) if len(hyp) < len(ref) else (ref, hyp)
    inter = sum(min(c, big[g]) for g, c in small.items() if g in big)
    return _f_rs(inter / max(sum(hyp.values()), 1), inter / max(sum(ref.values()), 1))


def _rs_pair(h: RougeScoreFeatures, r: RougeScoreFeatures) -> tuple[float, float, float]:
    if h.tokens and r.tokens:
        lcs = LCSseq.similarity(h.code, r.code)
        rl = _f_rs(lcs / len(h.tokens), lcs / len(r.tokens))
    else:
        rl = 0.0
    return _rs_ngram(h.unigrams, r.unigrams), _rs_ngram(h.bigrams, r.bigrams), rl


# ---------------------------------------------------------------- pltrdy semantics
def _f_pl(p: float, r: float) -> float:
    return 2.0 * ((p * r) / (p + r + 1e-8))


def _pl_ngram(hyp: frozenset, ref: frozenset) -> float:
    overlap = len(hyp & ref)
    p = overlap / len(hyp) if hyp else 0.0
    r = overlap / len(ref) if ref else 0.0
    return _f_pl(p, r)


def lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """Word types of the LCS of x (reference) and y (hypothesis) that pltrdy's `_recon_lcs` reconstructs.

    The DP value table[i][j] = LCS(x[:i], y[:j]) is read off bit-parallel column vectors (i minus the number of
    one-bits among the low i bits of column j), so the backtrack follows pltrdy's rule exactly: diagonal on a
    match, else up when table[i-1][j] > table[i][j-1], else left.
    """
    n = len(x)
    masks: dict[str, int] = {}
    for i, w in enumerate(x):
        masks[w] = masks.get(w, 0) | (1 << i)
    full = (1 << n) - 1
    v = full
    cols = [v]
    for w in y:
        u = v & masks.get(w, 0)
        v = ((v + u) | (v - u)) & full
        cols.append(v)
    out: set[str] = set()
    i, j = n, len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.add(x[i - 1])
            i -= 1
            j -= 1
        else:
            up = (i - 1) - (cols[j] & ((1 << (i - 1)) - 1)).bit_count()
            left = i - (cols[j - 1] & ((1 << i) - 1)).bit_count()
            if up > left:
                i -= 1
            else:
                j -= 1
    return out


def _pl_rouge_l(h: PltrdyFeatures, r: PltrdyFeatures) -> float:
    union: set[str] = set()
    for ref_s in r.sentences:
        for hyp_s in h.sentences:
            union |= lcs_words(ref_s, hyp_s)
    llcs = len(union)
    r_lcs = llcs / r.n_word_types
    p_lcs = llcs / h.n_word_types
    return _f_pl(p_lcs, r_lcs)


def _pl_pair(h: PltrdyFeatures, r: PltrdyFeatures) -> tuple[float, float, float]:
    if not h.sentences or not r.sentences:
        return 0.0, 0.0, 0.0
    return _pl_ngram(h.unigrams, r.unigrams), _pl_ngram(h.bigrams, r.bigrams), _pl_rouge_l(h, r)


def pair_scores(hyp, ref) -> tuple[float, float, float]:
    """(ROUGE-1, ROUGE-2, ROUGE-L) F1 of one hypothesis against one reference, both as `features`."""
    return get_semantics(hyp.semantics).pair(hyp, ref)


# ---------------------------------------------------------------- one class per semantics
class RougeScoreSemantics:
    """rouge-score: clipped n-gram counts, whole-summary LCS. Symmetric F1, so pairwise is computed in bulk."""
    name = "rouge-score"

    def features(self, tokens: Sequence[str]) -> RougeScoreFeatures:
        tokens = tuple(tokens)
        return RougeScoreFeatures(tokens, "".join(map(_code, tokens)), Counter(_ngrams(tokens, 1)),
                                  Counter(_ngrams(tokens, 2)))

    def pair(self, h: RougeScoreFeatures, r: RougeScoreFeatures) -> tuple[float, float, float]:
        return _rs_pair(h, r)

    def pairwise(self, feats: list):
        """[k, k, 3] with M[i, j] = (R1, R2, RL) F1 of i against j: n-gram overlaps as minima of count matrices,
        LCS lengths by rapidfuzz's `cdist` (C)."""
        import numpy as np
        from rapidfuzz import process

        k = len(feats)
        out = np.zeros((k, k, 3))
        if k == 0:
            return out
        lengths = np.array([len(f.tokens) for f in feats], dtype=np.float64)
        for m, attr in enumerate(("unigrams", "bigrams")):
            counts = _count_matrix([getattr(f, attr) for f in feats])
            inter = np.minimum(counts[:, None, :], counts[None, :, :]).sum(-1).astype(np.float64)
            totals = counts.sum(1).astype(np.float64)
            p = inter / np.maximum(totals, 1)[:, None]
            r = inter / np.maximum(totals, 1)[None, :]
            out[:, :, m] = _f_rs_array(p, r)
        lcs = process.cdist([f.code for f in feats], [f.code for f in feats], scorer=LCSseq.similarity,
                            dtype=np.int64).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lcs / lengths[:, None]
            r = lcs / lengths[None, :]
        rl = _f_rs_array(np.nan_to_num(p), np.nan_to_num(r))
        empty = lengths == 0
        rl[empty, :] = 0.0
        rl[:, empty] = 0.0
        out[:, :, 2] = rl
        return out


class PltrdySemantics:
    """pltrdy `rouge` 1.0.1: n-gram sets, sentences split on '.', summary-level union LCS (asymmetric).

    Pairwise: R1/R2 for all pairs at once from binary n-gram matrices (one matrix product); ROUGE-L's union sizes for
    all ordered pairs in one call of a compiled kernel (dialsum.lcs_kernel), which stops a pair as soon as the union
    holds every word the two texts share. Without numba, the same loop runs in Python. Same numbers as `pair` to the
    last bit.
    """
    name = "pltrdy"

    def __init__(self, compiled: bool = True) -> None:
        self._lcs_cache: dict[tuple, frozenset] = {}
        self._ids: dict[str, int] = {}
        self.kernel = None
        if compiled:
            try:
                from dialsum.lcs_kernel import union_lcs_sizes

                self.kernel = union_lcs_sizes
            except ImportError:  # numba missing: the pure-Python loop below gives the same numbers, slower
                pass

    def features(self, tokens: Sequence[str]) -> PltrdyFeatures:
        sents = tuple(tuple(s.split(" ")) for s in pltrdy_sentences(" ".join(tokens)))
        words = [w for s in sents for w in s]
        return PltrdyFeatures(sents, frozenset(_ngrams(words, 1)), frozenset(_ngrams(words, 2)), len(set(words)))

    def pair(self, h: PltrdyFeatures, r: PltrdyFeatures) -> tuple[float, float, float]:
        return _pl_pair(h, r)

    def _union_sizes(self, feats: list):
        """[k, k] union-LCS sizes from the compiled kernel, or None where numba is not installed."""
        if self.kernel is None:
            return None
        import numpy as np

        ids = self._ids
        toks, starts, lens, first, nsent = [], [], [], [], []
        for f in feats:
            first.append(len(lens))
            nsent.append(len(f.sentences))
            for sent in f.sentences:
                starts.append(len(toks))
                lens.append(len(sent))
                toks.extend(ids.setdefault(w, len(ids)) for w in sent)
        return self.kernel(np.array(toks or [0], dtype=np.int32), np.array(starts, dtype=np.int64),
                           np.array(lens, dtype=np.int64), np.array(first, dtype=np.int64),
                           np.array(nsent, dtype=np.int64), len(ids) + 1).astype(np.float64)

    def _lcs(self, ref_s: tuple, hyp_s: tuple) -> frozenset:
        key = (ref_s, hyp_s)
        got = self._lcs_cache.get(key)
        if got is None:
            if len(self._lcs_cache) > 1 << 20:
                self._lcs_cache.clear()
            got = self._lcs_cache[key] = frozenset(lcs_words(ref_s, hyp_s))
        return got

    def _rouge_l(self, h: PltrdyFeatures, r: PltrdyFeatures, h_types: list[frozenset], r_types: list[frozenset],
                 common: frozenset) -> float:
        union: set[str] = set()
        if common:
            for ref_s, rt in zip(r.sentences, r_types):
                for hyp_s, ht in zip(h.sentences, h_types):
                    if rt.isdisjoint(ht):
                        continue  # no shared word, empty LCS
                    union |= self._lcs(ref_s, hyp_s)
                if len(union) == len(common):
                    break  # the union cannot hold more than the shared words
        return _f_pl(len(union) / h.n_word_types, len(union) / r.n_word_types)

    def pairwise(self, feats: list):
        import numpy as np

        k = len(feats)
        out = np.zeros((k, k, 3))
        if k == 0:
            return out
        alive = np.array([bool(f.sentences) for f in feats])
        for m, attr in enumerate(("unigrams", "bigrams")):
            sets = [getattr(f, attr) for f in feats]
            binary = _count_matrix([dict.fromkeys(x, 1) for x in sets]).astype(np.float64)
            inter = binary @ binary.T
            sizes = np.array([len(x) for x in sets], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(sizes[:, None] > 0, inter / sizes[:, None], 0.0)
                r = np.where(sizes[None, :] > 0, inter / sizes[None, :], 0.0)
            out[:, :, m] = 2.0 * ((p * r) / (p + r + 1e-8))
        union = self._union_sizes(feats)
        if union is None:  # no compiler: the same loop in Python
            types = [[frozenset(s) for s in f.sentences] for f in feats]
            words = [frozenset(w for s in f.sentences for w in s) for f in feats]
            for i in range(k):
                if not alive[i]:
                    continue
                for j in range(k):
                    if alive[j]:
                        out[i, j, 2] = self._rouge_l(feats[i], feats[j], types[i], types[j], words[i] & words[j])
        else:
            n_types = np.array([max(f.n_word_types, 1) for f in feats], dtype=np.float64)
            p = union / n_types[:, None]
            r = union / n_types[None, :]
            out[:, :, 2] = 2.0 * ((p * r) / (p + r + 1e-8))
        out[~alive, :, :] = 0.0
        out[:, ~alive, :] = 0.0
        return out


def _count_matrix(counters: list) -> "np.ndarray":
    """Rows of n-gram counts over a shared vocabulary (int64 [k, V])."""
    import numpy as np

    vocab: dict = {}
    rows, cols, vals = [], [], []
    for i, c in enumerate(counters):
        for g, n in c.items():
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
            vals.append(n)
    counts = np.zeros((len(counters), max(len(vocab), 1)), dtype=np.int64)
    counts[rows, cols] = vals
    return counts


SEMANTICS_REGISTRY: dict[str, object] = {"pltrdy": PltrdySemantics(), "rouge-score": RougeScoreSemantics()}


def get_semantics(name: str):
    """The metric for one semantics: `features(tokens)`, `pair(h, r)`, `pairwise(feats) -> [k, k, 3]`."""
    try:
        return SEMANTICS_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown semantics {name!r} (choose {' or '.join(SEMANTICS)})") from None


def pairwise_matrix(feats: list, semantics: str):
    """float64 array M[i, j, k]: metric k (R1, R2, RL) of candidate i as hypothesis against candidate j; the same
    numbers as `pair_scores` for every pair."""
    return get_semantics(semantics).pairwise(feats)


def _f_rs_array(p, r):
    import numpy as np

    s = p + r
    with np.errstate(divide="ignore", invalid="ignore"):
        f = 2 * p * r / s
    return np.where(s > 0, f, 0.0)


# ---------------------------------------------------------------- corpus scoring
@dataclass(frozen=True)
class CorpusScore:
    rouge1: float
    rouge2: float
    rougeL: float
    per_sample: tuple[tuple[float, float, float], ...]

    @property
    def final(self) -> float:
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3 * 100

    def as_dict(self) -> dict[str, float]:
        return {"rouge1": self.rouge1, "rouge2": self.rouge2, "rougeL": self.rougeL, "final": self.final}


def score_corpus(preds: Sequence[str], refs: Sequence[Sequence[str]], semantics: str = DEFAULT_SEMANTICS,
                 tokenizer: str = "mecab") -> CorpusScore:
    """Leaderboard score of predictions against one or more references per sample (mean over references)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} reference lists")
    flat = list(preds) + [r for rs in refs for r in rs]
    toks = dict(zip(flat, tokenize_many(flat, tokenizer)))
    cache: dict[str, object] = {}

    def feat(text: str):
        f = cache.get(text)
        if f is None:
            f = cache[text] = features(toks[text], semantics)
        return f

    per_sample = []
    for pred, rs in zip(preds, refs):
        if not rs:
            raise ValueError("a sample has no reference")
        h = feat(pred)
        scores = [pair_scores(h, feat(r)) for r in rs]
        per_sample.append(tuple(sum(s[m] for s in scores) / len(scores) for m in range(3)))
    n = max(len(per_sample), 1)
    means = [sum(s[m] for s in per_sample) / n for m in range(3)]
    return CorpusScore(means[0], means[1], means[2], tuple(per_sample))
