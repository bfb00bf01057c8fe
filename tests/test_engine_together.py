"""`Engine.run_together`: child stages that follow each other share one child process (a tuning trial's training
and its scoring), yet each keeps its own folder, meta.json and manifest entry, and a failure after the first leaves
the first done for the next call."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dialsum.engine.core import Engine, Stage
from dialsum.errors import DialsumError


def _probe(n: int, fail: bool = False) -> Stage:
    return Stage(f"probe:{n}", "probe", 1, "stage_probe:record_pid", {"n": n, "fail": fail}, {}, child=True)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    tests = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]))
    return lambda: Engine(tmp_path / "cache", tmp_path / "run")


def test_stages_run_together_in_one_child_and_are_cached_apart(engine, tmp_path):
    eng = engine()
    a, b, c = eng.run_together([_probe(1), _probe(2), _probe(3)])
    assert [r["n"] for r in (a, b, c)] == [1, 2, 3]
    assert a["pid"] == b["pid"] == c["pid"] != os.getpid()  # one child, not this process
    assert eng.ran == ["probe:1", "probe:2", "probe:3"]
    for s in (_probe(1), _probe(2), _probe(3)):
        meta = json.loads((s.out_dir(tmp_path / "cache") / "meta.json").read_text())
        assert meta["stage"] == s.name and meta["key"] == s.key
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert {k: v["status"] for k, v in man.items()} == {"probe:1": "ran", "probe:2": "ran", "probe:3": "ran"}
    # one of them alone later is a cache hit; a new one beside two cached ones runs alone
    again = engine()
    assert again.run_together([_probe(1), _probe(2)]) == [a, b] and again.ran == []
    x, d = again.run_together([_probe(1), _probe(4)])
    assert x == a and d["pid"] != a["pid"] and again.ran == ["probe:4"]


def test_a_failing_stage_leaves_the_ones_before_it_done(engine, tmp_path):
    eng = engine()
    with pytest.raises(DialsumError) as e:
        eng.run_together([_probe(1), _probe(2, fail=True), _probe(3)])
    msg = str(e.value)
    assert "\n" not in msg and "probe:1 + probe:2 + probe:3" in msg and "probe 2 refused" in msg
    cache = tmp_path / "cache"
    assert (_probe(1).out_dir(cache) / "meta.json").is_file()
    assert not (_probe(2, fail=True).out_dir(cache) / "meta.json").exists()
    assert not (_probe(3).out_dir(cache) / "meta.json").exists()
    eng = engine()
    first, second, third = eng.run_together([_probe(1), _probe(2), _probe(3)])
    assert eng.ran == ["probe:2", "probe:3"] and second["pid"] == third["pid"] != first["pid"]
