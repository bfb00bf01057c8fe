"""The on-disk cache of Mecab's morphemes: same tokens as a fresh analysis, used across commands, safe under kills,
concurrent writers and broken storage (warns, still answers, same output)."""
from __future__ import annotations

import csv
import multiprocessing as mp
import os
import signal
import sqlite3

import pytest

from conftest import run_cli, shared_file
from dialsum.scoring import tokenize
from dialsum.scoring.morpheme_cache import MorphemeCache, open_cache
from dialsum.scoring.tokenize import MecabTokenizer, mecab_identity, tokenize_many


def real_texts(n: int) -> list[str]:
    d = shared_file("ko/peer_test_predictions")
    texts = []
    for p in sorted(d.glob("*.csv")):
        if p.name == "MANIFEST.csv":
            continue
        with open(p, encoding="utf-8-sig") as f:
            texts += [r["summary"] for r in csv.DictReader(f)]
    return list(dict.fromkeys(texts))[:n]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DIALSUM_CACHE_DIR", str(d))
    return d


def test_cached_tokens_equal_a_fresh_analysis_and_skip_mecab(cache_dir):
    texts = real_texts(300) + ["", "  공백만\t있는\n 요약 ", "English words 123."]
    first = tokenize_many(texts, "mecab")
    assert tokenize.LAST_STATS == {"distinct": len(texts), "cached": 0, "analysed": len(texts)}
    fresh = MecabTokenizer()  # its own in-process memo is empty
    assert first == [fresh(t) for t in texts]
    again = tokenize_many(texts + texts[:5], "mecab")
    assert tokenize.LAST_STATS == {"distinct": len(texts), "cached": len(texts), "analysed": 0}
    assert again == first + first[:5]
    db = sqlite3.connect(open_cache(mecab_identity()).path)
    assert db.execute("SELECT count(*) FROM morphemes").fetchone()[0] == len(texts)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_identity_names_the_cache_file(cache_dir):
    path = open_cache(mecab_identity()).path
    assert path.parent == cache_dir and path.name.startswith("morphemes-mecab-") and path.suffix == ".sqlite"


def _write_then_die(path: str, committed: list[str], doomed: list[str]) -> None:
    cache = MorphemeCache(__import__("pathlib").Path(path))
    cache.put_many((t, ("tok", str(i))) for i, t in enumerate(committed))

    def rows():
        for i, t in enumerate(doomed):
            if i == len(doomed) // 2:
                os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction
            yield t, ("x",)

    cache.put_many(rows())


def test_kill_mid_write_keeps_the_previous_state(tmp_path):
    path = tmp_path / "m.sqlite"
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_write_then_die, args=(str(path), ["a", "b", "c"], [f"d{i}" for i in range(50)]))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    cache = MorphemeCache(path)
    assert cache.get_many(["a", "b", "c", "d0", "d1"]) == {"a": ("tok", "0"), "b": ("tok", "1"), "c": ("tok", "2")}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _tokenize_in_child(cache: str, texts: list[str]) -> None:
    os.environ["DIALSUM_CACHE_DIR"] = cache
    tokenize_many(texts, "mecab")


def test_concurrent_writers_both_land(cache_dir):
    texts = real_texts(400)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_tokenize_in_child, args=(str(cache_dir), part))
             for part in (texts[:250], texts[150:])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = tokenize_many(texts, "mecab")
    assert tokenize.LAST_STATS["analysed"] == 0
    fresh = MecabTokenizer()
    assert got == [fresh(t) for t in texts]


def _ensemble(tmp_path, files, out_name, cache_env):
    out = tmp_path / out_name
    r = run_cli("ensemble", "--candidates", *map(str, files), "--out", str(out), "--semantics", "rouge-score",
                env={"DIALSUM_CACHE_DIR": cache_env})
    return r, out


def test_cli_reuses_the_cache_and_survives_a_broken_one(tmp_path):
    d = shared_file("ko/peer_test_predictions")
    files = sorted(p for p in d.glob("*.csv") if p.name != "MANIFEST.csv")[:3]
    r, off = _ensemble(tmp_path, files, "off.csv", "off")
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache"
    r1, cold = _ensemble(tmp_path, files, "cold.csv", str(cache))
    r2, warm = _ensemble(tmp_path, files, "warm.csv", str(cache))
    assert r1.returncode == r2.returncode == 0, r1.stderr + r2.stderr
    assert off.read_bytes() == cold.read_bytes() == warm.read_bytes()
    dbs = list(cache.glob("morphemes-*.sqlite"))
    assert len(dbs) == 1
    n_rows = sqlite3.connect(dbs[0]).execute("SELECT count(*) FROM morphemes").fetchone()[0]
    assert n_rows > 1000
    # a corrupt cache file: one warning, the same answer, exit 0
    for suffix in ("-wal", "-shm"):
        (dbs[0].parent / (dbs[0].name + suffix)).unlink(missing_ok=True)
    dbs[0].write_bytes(b"this is not a database" * 100)
    r3, broken = _ensemble(tmp_path, files, "broken.csv", str(cache))
    assert r3.returncode == 0, r3.stderr
    warnings = [ln for ln in r3.stderr.splitlines() if "morpheme cache" in ln]
    assert len(warnings) == 1 and str(dbs[0]) in warnings[0] and "Traceback" not in r3.stderr
    assert broken.read_bytes() == off.read_bytes()
    # a cache "directory" that is a file: same
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r4, blocked = _ensemble(tmp_path, files, "blocked.csv", str(blocker))
    assert r4.returncode == 0 and "morpheme cache" in r4.stderr
    assert blocked.read_bytes() == off.read_bytes()


def test_score_command_fills_the_cache_too(tmp_path):
    dev = shared_file("ko/dev_200.csv")
    pred = shared_file("ko/dev_200_kobart_predictions.csv")
    cache = tmp_path / "cache"
    env = {"DIALSUM_CACHE_DIR": str(cache)}
    a = run_cli("score", "--pred", str(pred), "--refs", str(dev), "--json", env=env)
    b = run_cli("score", "--pred", str(pred), "--refs", str(dev), "--json", env=env)
    c = run_cli("score", "--pred", str(pred), "--refs", str(dev), "--json", env={"DIALSUM_CACHE_DIR": "off"})
    assert a.returncode == b.returncode == c.returncode == 0, a.stderr + b.stderr + c.stderr
    assert a.stdout == b.stdout == c.stdout
    assert list(cache.glob("morphemes-*.sqlite"))


def test_default_location_follows_xdg_and_off_turns_it_off(tmp_path, monkeypatch):
    from dialsum.scoring.morpheme_cache import cache_dir

    monkeypatch.delenv("DIALSUM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "dialsum"
    monkeypatch.setenv("DIALSUM_CACHE_DIR", "off")
    assert cache_dir() is None and open_cache("x") is None
