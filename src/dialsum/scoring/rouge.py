"""ROUGE-1/2/L F1 between two texts' token features, and all-pairs matrices of them: the leaderboard metric's core
(dialsum.scoring.metric averages it over references and a corpus).

Two reference semantics, both exact (tests compare them to the libraries to 1e-12):
  * "rouge-score": `rouge_score.RougeScorer(['rouge1','rouge2','rougeL'])` given the morphemes as tokens
    (n-gram counts with multiplicity, LCS over the whole summary).
  * "pltrdy": `rouge` 1.0.1 `Rouge().get_scores(hyp, ref)` on space-joined morphemes (sentences split on '.',
    n-grams counted as sets, summary-level union LCS); an empty hypothesis scores 0 instead of raising.

Texts are turned into `features` once, in batches (`features_many`); every score is then a pure function of two
feature objects, which is what makes the all-pairs matrices used by the ensemble cheap (`pairwise_matrix`,
`pairwise_many`). Every overlap runs in C as an LCS (rapidfuzz's bit-parallel `LCSseq`) of code strings with one
character per token: the token sequence for ROUGE-L, the sorted tokens and sorted bigrams for ROUGE-1/2 (see
dialsum.scoring.codes). pltrdy's union LCS needs the LCS itself, not only its length: a compiled kernel
(dialsum.scoring.lcs_kernel) for all pairs, or a bit-parallel table on Python ints with pltrdy's own tie-breaking.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from rapidfuzz.distance import LCSseq

from dialsum.scoring.codes import encode_batch

SEMANTICS = ("pltrdy", "rouge-score")
DEFAULT_SEMANTICS = "pltrdy"


# ---------------------------------------------------------------- features
class RougeScoreFeatures(NamedTuple):
    tokens: tuple[str, ...]
    code: str                # one character per token
    unigrams: str            # the token codes, sorted (a multiset)
    bigrams: str | list      # the bigram codes, sorted (a multiset)
    batch: int               # codes mean something only within their batch
    semantics = "rouge-score"


class PltrdyFeatures(NamedTuple):
    tokens: tuple[str, ...]
    sentences: tuple[tuple[str, ...], ...]  # words per sentence, as pltrdy splits them
    unigrams: str            # distinct word codes, sorted (a set)
    bigrams: str | list      # distinct bigram codes, sorted (a set)
    n_word_types: int
    batch: int               # codes mean something only within their batch
    semantics = "pltrdy"


def pltrdy_sentences(text: str) -> list[str]:
    """pltrdy's own sentence split: on every '.', whitespace collapsed, zero-length pieces dropped."""
    return [" ".join(s.split()) for s in text.split(".") if len(s) > 0]


def features(tokens: Sequence[str], semantics: str):
    """Precompute what scoring needs from one tokenised text under one semantics."""
    return get_semantics(semantics).features(tokens)


def features_many(token_lists: Sequence[Sequence[str]], semantics: str) -> list:
    """`features` of many tokenised texts, in one batch."""
    return get_semantics(semantics).features_many(token_lists)


def _one_batch(sem, feats: list) -> list:
    """The features themselves when they share a batch, else all of them re-encoded together."""
    if len({f.batch for f in feats}) <= 1:
        return feats
    return sem.features_many([f.tokens for f in feats])


def _overlaps(a: list, b: list):
    """int64 [len(a), len(b)]: LCS lengths of every pair of code sequences (rapidfuzz, C)."""
    import numpy as np
    from rapidfuzz import process

    return process.cdist(a, b, scorer=LCSseq.similarity, dtype=np.int64)


# ---------------------------------------------------------------- rouge-score semantics
def _f_rs(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _rs_ngram(hyp: Sequence, ref: Sequence) -> float:
    inter = LCSseq.similarity(hyp, ref) if hyp and ref else 0
    return _f_rs(inter / max(len(hyp), 1), inter / max(len(ref), 1))


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


def _pl_ngram(hyp: Sequence, ref: Sequence) -> float:
    overlap = LCSseq.similarity(hyp, ref) if hyp and ref else 0
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
    """rouge-score: clipped n-gram counts, whole-summary LCS. Symmetric F1; pairwise is three C all-pairs calls."""
    name = "rouge-score"

    def features(self, tokens: Sequence[str]) -> RougeScoreFeatures:
        return self.features_many([tokens])[0]

    def features_many(self, token_lists: Sequence[Sequence[str]]) -> list[RougeScoreFeatures]:
        """`features` of many texts in one batch (much faster than one by one)."""
        token_lists = [tuple(t) for t in token_lists]
        codes, uni, bi, gen = encode_batch(token_lists, distinct=False)
        return [RougeScoreFeatures(*row, gen) for row in zip(token_lists, codes, uni, bi)]

    def pair(self, h: RougeScoreFeatures, r: RougeScoreFeatures) -> tuple[float, float, float]:
        if h.batch != r.batch:
            h, r = self.features_many([h.tokens, r.tokens])
        return _rs_pair(h, r)

    def pairwise(self, feats: list):
        """[k, k, 3] with M[i, j] = (R1, R2, RL) F1 of i against j: n-gram overlaps and LCS lengths as LCS of code
        strings, all pairs per metric in one rapidfuzz `cdist` call (C); the F1 arithmetic is rouge-score's."""
        return self.pairwise_many([feats])[0]

    def pairwise_many(self, groups: Sequence[list]) -> list:
        """`pairwise` of many candidate lists: the overlaps per list (C), the F1 arithmetic once per chunk of
        same-size lists rather than once per list."""
        import numpy as np

        out: list = [None] * len(groups)
        by_size: dict[int, list[int]] = {}
        for gi, g in enumerate(groups):
            by_size.setdefault(len(g), []).append(gi)
        for k, members in by_size.items():
            step = max(1, (1 << 21) // max(3 * k * k, 1))  # bounded scratch memory
            for c in range(0, len(members), step):
                chunk = members[c:c + step]
                inter = np.zeros((len(chunk), k, k, 3))
                n = np.zeros((len(chunk), k))
                for row, gi in enumerate(chunk):
                    feats = _one_batch(self, groups[gi])
                    if not feats:
                        continue
                    for m, strings in enumerate(([f.unigrams for f in feats], [f.bigrams for f in feats],
                                                 [f.code for f in feats])):
                        inter[row, :, :, m] = _overlaps(strings, strings)
                    n[row] = [len(f.tokens) for f in feats]
                # hypothesis and reference sizes: tokens, bigrams, tokens; max(., 1) as rouge-score's n-gram scores
                # do (for ROUGE-L an empty side has overlap 0, hence F1 0, which is rouge-score's special case)
                sizes = np.maximum(np.stack([n, n - 1, n], axis=2), 1.0)
                f1 = _f_rs_array(inter / sizes[:, :, None, :], inter / sizes[:, None, :, :])
                for row, gi in enumerate(chunk):
                    out[gi] = f1[row]
        return out


class PltrdySemantics:
    """pltrdy `rouge` 1.0.1: n-gram sets, sentences split on '.', summary-level union LCS (asymmetric).

    Pairwise: R1/R2 for all pairs as LCS of sorted distinct code strings (rapidfuzz `cdist`, C); ROUGE-L's union
    sizes for all ordered pairs in one call of a compiled kernel (dialsum.scoring.lcs_kernel), which stops a pair as soon as
    the union holds every word the two texts share. Without numba, the same loop runs in Python. Same numbers as
    `pair` to the last bit.
    """
    name = "pltrdy"

    def __init__(self, compiled: bool = True) -> None:
        self._lcs_cache: dict[tuple, frozenset] = {}
        self._ids: dict[str, int] = {}
        self.compiled = compiled
        self._kernel = None

    @property
    def kernel(self):
        """The compiled union-LCS kernel, imported on first use (importing numba is not free), or None."""
        if self._kernel is None and self.compiled:
            try:
                from dialsum.scoring.lcs_kernel import union_lcs_sizes

                self._kernel = union_lcs_sizes
            except ImportError:  # numba missing: the pure-Python loop gives the same numbers, slower
                self.compiled = False
        return self._kernel

    def features(self, tokens: Sequence[str]) -> PltrdyFeatures:
        return self.features_many([tokens])[0]

    def features_many(self, token_lists: Sequence[Sequence[str]]) -> list[PltrdyFeatures]:
        """`features` of many texts in one batch (much faster than one by one)."""
        token_lists = [tuple(t) for t in token_lists]
        sents = [tuple(tuple(s.split(" ")) for s in pltrdy_sentences(" ".join(t))) for t in token_lists]
        words = [[w for s in ss for w in s] for ss in sents]
        _, uni, bi, gen = encode_batch(words, distinct=True)
        return [PltrdyFeatures(t, ss, u, b, len(u), gen) for t, ss, u, b in zip(token_lists, sents, uni, bi)]

    def pair(self, h: PltrdyFeatures, r: PltrdyFeatures) -> tuple[float, float, float]:
        if h.batch != r.batch:
            h, r = self.features_many([h.tokens, r.tokens])
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

    def pairwise_many(self, groups: Sequence[list]) -> list:
        """`pairwise` of many candidate lists."""
        return [self.pairwise(g) for g in groups]

    def pairwise(self, feats: list):
        import numpy as np

        k = len(feats)
        out = np.zeros((k, k, 3))
        if k == 0:
            return out
        feats = _one_batch(self, feats)
        alive = np.array([bool(f.sentences) for f in feats])
        for m, attr in enumerate(("unigrams", "bigrams")):
            strings = [getattr(f, attr) for f in feats]
            inter = _overlaps(strings, strings).astype(np.float64)
            sizes = np.array([len(x) for x in strings], dtype=np.float64)
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


SEMANTICS_REGISTRY: dict[str, object] = {"pltrdy": PltrdySemantics(), "rouge-score": RougeScoreSemantics()}


def get_semantics(name: str):
    """The metric for one semantics: `features(tokens)`, `features_many(token_lists)`, `pair(h, r)`,
    `pairwise(feats) -> [k, k, 3]`, `pairwise_many(lists of feats)`."""
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
