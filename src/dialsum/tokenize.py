"""Tokenisers for the leaderboard metric: Mecab-ko morphemes (the leaderboard's), plus Latin and whitespace.

Mecab is called through its C extension's lattice directly (about 3x faster than `MeCab().morphs`, identical
morphemes), and each distinct string is analysed once per process.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

Tokenizer = Callable[[str], list[str]]


class MecabTokenizer:
    """Korean morphemes from python-mecab-ko with mecab-ko-dic, e.g. '했다.' -> ['했', '다', '.']."""

    def __init__(self) -> None:
        import _mecab
        import mecab

        self._tagger = mecab.MeCab()._tagger
        self._lattice = _mecab.Lattice()
        self._lattice.add_request_type(_mecab.MECAB_ALLOCATE_SENTENCE)
        self.tokenize = lru_cache(maxsize=1 << 18)(self._tokenize)

    def _tokenize(self, text: str) -> tuple[str, ...]:
        text = " ".join(text.split())  # newlines/tabs are word boundaries like spaces, as for the metric's users
        if not text:
            return ()
        lat = self._lattice
        lat.set_sentence(text)
        if not self._tagger.parse(lat):
            raise RuntimeError(f"mecab failed on {text[:40]!r}: {self._tagger.what()}")
        return tuple(line.split("\t", 1)[0] for line in lat.to_string().split("\n") if line and line != "EOS")

    def __call__(self, text: str) -> tuple[str, ...]:
        return self.tokenize(text)


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def latin_tokenize(text: str) -> tuple[str, ...]:
    """rouge-score's default tokeniser without stemming: lowercase, runs of [a-z0-9] (it deletes Hangul)."""
    return tuple(t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t)


def whitespace_tokenize(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@lru_cache(maxsize=None)
def get_tokenizer(name: str) -> Callable[[str], tuple[str, ...]]:
    if name == "mecab":
        return MecabTokenizer()
    if name == "latin":
        return latin_tokenize
    if name == "whitespace":
        return whitespace_tokenize
    raise ValueError(f"unknown tokenizer {name!r} (choose mecab, latin or whitespace)")


def tokenize_many(texts: list[str], name: str, workers: int = 1) -> list[tuple[str, ...]]:
    """Tokenise a list, each distinct string once; `workers>1` splits the distinct strings over processes."""
    distinct = list(dict.fromkeys(texts))
    if workers > 1 and name == "mecab" and len(distinct) >= 2000:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp

        chunks = [distinct[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_tokenize_chunk, chunks, [name] * workers))
        table = {}
        for chunk, toks in zip(chunks, parts):
            table.update(zip(chunk, toks))
    else:
        tok = get_tokenizer(name)
        table = {t: tok(t) for t in distinct}
    return [table[t] for t in texts]


def _tokenize_chunk(chunk: list[str], name: str) -> list[tuple[str, ...]]:
    tok = get_tokenizer(name)
    return [tok(t) for t in chunk]
