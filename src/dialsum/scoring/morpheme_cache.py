"""Mecab's morphemes of every text already analysed, kept on disk so repeated commands skip the analyser.

Mecab is the one cost of scoring and consensus that no algorithm removes (about 0.1 ms per summary, more than all
the pairwise ROUGE of a 12-system ensemble), and competition work re-reads the same candidates again and again:
`dialsum ensemble` with another `--fit-refs`, `--utility` or `--semantics`, `dialsum score` on files already
ensembled, tuning. So the morphemes of each distinct text are stored in SQLite, one file per analyser identity
(its compiled binding and dictionary files): another Mecab or dictionary never reads old entries.

SQLite gives what a cache must have here: writers in several processes at once (tune workers), a kill mid-write
leaves the previous state, lookups by text without loading the whole file. The cache is an optimisation only: when
it cannot be opened, read or written (corrupt file, no permission, full disk, locked too long) the command warns once
on stderr and analyses the texts itself. `DIALSUM_CACHE_DIR` moves it (default `$XDG_CACHE_HOME/dialsum` or
`~/.cache/dialsum`); `DIALSUM_CACHE_DIR=off` turns it off.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from dialsum.user_cache import cache_dir
from dialsum.logs import log

SEP = "\x1f"  # never inside a morpheme: it is whitespace to str.split, and texts are split on whitespace first
_CHUNK = 900  # bound parameters per SELECT, below every SQLite build's limit
_warned: set[str] = set()


def _warn(path: Path, err: Exception) -> None:
    key = str(path)
    if key not in _warned:
        _warned.add(key)
        log(f"warning: morpheme cache {path} unusable ({type(err).__name__}: {err}); analysing without it "
            f"(delete the file to rebuild it, or set DIALSUM_CACHE_DIR=off)", logging.WARNING)


class MorphemeCache:
    """text -> morphemes for one analyser identity; every method degrades to 'nothing cached' on a storage error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self.broken = False

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and not self.broken:
            for attempt in range(40):
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._db = self._setup(sqlite3.connect(self.path, timeout=30, isolation_level=None))
                    break
                except sqlite3.OperationalError as e:
                    # two processes creating the file at once: switching it to WAL can fail with "locked" at once
                    # (SQLite's deadlock avoidance skips the busy timeout); wait and try again
                    if "locked" in str(e) and attempt < 39:
                        time.sleep(0.05 * (1 + attempt % 10))
                        continue
                    self.broken = True
                    _warn(self.path, e)
                    break
                except (sqlite3.Error, OSError) as e:
                    self.broken = True
                    _warn(self.path, e)
                    break
        return self._db

    @staticmethod
    def _setup(db: sqlite3.Connection) -> sqlite3.Connection:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS morphemes (text TEXT PRIMARY KEY, tokens TEXT NOT NULL) "
                       "WITHOUT ROWID")
        except BaseException:
            db.close()
            raise
        return db

    def get_many(self, texts: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The cached morphemes of those texts that have them."""
        db = self._conn()
        if db is None or not texts:
            return {}
        rows: list[tuple[str, str]] = []
        try:
            for i in range(0, len(texts), _CHUNK):
                chunk = texts[i:i + _CHUNK]
                rows += db.execute(f"SELECT text, tokens FROM morphemes WHERE text IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
        except sqlite3.Error as e:
            self.broken = True
            _warn(self.path, e)
            return {}
        return {t: tuple(v.split(SEP)) if v else () for t, v in rows}

    def put_many(self, items: Iterable[tuple[str, Sequence[str]]]) -> None:
        """Store new analyses in one transaction: all of them or, if anything fails or the process dies, none."""
        db = self._conn()
        if db is None:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO morphemes (text, tokens) VALUES (?, ?)",
                               ((t, SEP.join(toks)) for t, toks in items))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self.broken = True
            _warn(self.path, e)


def open_cache(identity: str) -> MorphemeCache | None:
    """The cache file for one analyser identity, or None when caching is off."""
    d = cache_dir()
    if d is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)
    return MorphemeCache(d / f"morphemes-{safe}.sqlite")
