"""How a stage child starts: on a machine without GPUs it is forked from Python's fork server (torch, transformers and
peft imported once); with DIALSUM_STAGE_START=exec, or once the environment changed, it is a fresh interpreter. Both
give the stage the same folder, environment, temp folder, main module and arguments, output in the stage's log and
exit status, and a refusal is the same one line. Each case runs in a fresh process (its own fork server)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

SCRIPT = """
import json, os, sys
from pathlib import Path
from dialsum.engine.core import Engine, Stage
from dialsum.errors import DialsumError

root = Path(sys.argv[1])
def probe(n, fail=False):
    return Stage(f"probe:{n}", "probe", 1, "stage_probe:record_process", {"n": n, "fail": fail}, {}, child=True)
eng = Engine(root / "cache", root / "run")
out = {"main_pid": os.getpid(), "first": eng.run(probe(1)), "second": eng.run(probe(2))}
try:
    eng.run(probe(3, fail=True))
except DialsumError as e:
    out["refusal"] = str(e)
os.environ["DIALSUM_PROBE"] = "changed"  # read by libraries at import: the fork server's copy is stale now
out["changed"] = eng.run(probe(4))
print(json.dumps(out))
"""


def _run(tmp: Path, tmpdir: Path, **env) -> dict:
    tmp.mkdir()
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "DIALSUM_PROBE": "set", "TMPDIR": str(tmpdir), **env}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp)], cwd=tmp, env=full, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def short_tmp():
    """A TMPDIR short enough for the fork server's socket (an AF_UNIX path stops at ~107 bytes)."""
    path = Path(tempfile.mkdtemp(dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_forked_child_sees_what_a_fresh_interpreter_sees(tmp_path, short_tmp):
    fork = _run(tmp_path / "fork", short_tmp)
    exe = _run(tmp_path / "exec", short_tmp, DIALSUM_STAGE_START="exec")
    f1, f2, e1 = fork["first"], fork["second"], exe["first"]
    # forked: torch was there before the stage began, the parent is the fork server (not the engine's process)
    assert f1["torch_preloaded"] and f2["torch_preloaded"] and f1["ppid"] == f2["ppid"] != fork["main_pid"]
    assert f1["pid"] != f2["pid"]  # one child per stage, as before
    # exec: a fresh interpreter started by the engine's process, nothing preloaded
    assert not e1["torch_preloaded"] and e1["ppid"] == exe["main_pid"]
    for r, root in ((f1, tmp_path / "fork"), (e1, tmp_path / "exec")):
        assert r["cwd"] == str(root) and r["tmp"] == str(short_tmp) and r["probe_env"] == "set"
        assert r["unbuffered"] == "1" and r["main"] == "dialsum.engine.worker"
        assert len(r["argv"]) == 1 and Path(r["argv"][0]).parent == root / "cache" / "probe"  # its stage folder
    # a refusal is the same one line either way, and the stage's output is in its log
    assert fork["refusal"].replace(str(tmp_path / "fork"), "") == exe["refusal"].replace(str(tmp_path / "exec"), "")
    assert "probe 3 refused" in fork["refusal"] and "\n" not in fork["refusal"]
    for root in (tmp_path / "fork", tmp_path / "exec"):
        log = (root / "run" / "logs" / "probe-1.log").read_text()
        assert "probe 1 on stdout" in log and "probe 1 on stderr" in log
    # after the environment changed, the child is a fresh interpreter that sees the change
    ch = fork["changed"]
    assert ch["ppid"] == fork["main_pid"] and not ch["torch_preloaded"] and ch["probe_env"] == "changed"


def test_where_the_fork_server_cannot_start_children_are_fresh_interpreters(tmp_path):
    """The fork server's socket lives under TMPDIR; under one too long for a socket path every child is a fresh
    interpreter and the stages run as before."""
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    r = _run(tmp_path / "long", long_tmp)
    assert all(r[k]["ppid"] == r["main_pid"] and not r[k]["torch_preloaded"] for k in ("first", "second", "changed"))
    assert r["first"]["tmp"] == str(long_tmp) and "probe 3 refused" in r["refusal"]
