"""Stage child processes: the command that runs stage folders in a fresh interpreter (or under torchrun), its
environment (one GPU unless told otherwise), its output shown live and kept in the stage's log, and one line
quoting the child's own error when it fails. The engine (dialsum.engine.core) decides what runs; this starts it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dialsum.engine import forked
from dialsum.logs import PROGRESS, progress_enabled, quiet
from dialsum.errors import DialsumError

PRUNED_EXIT = 3  # a child's exit code for "stopped by the Optuna pruner"
WARNINGS_LOG = "DIALSUM_WARNINGS_LOG"  # a stage child writes library warnings to its stage log only
INTERRUPTED_EXIT = 130  # a child's exit code for "interrupted" (Ctrl-C, or its parent passing on SIGTERM)


class StagePruned(DialsumError):
    """The stage's child stopped because its Optuna trial was pruned."""


def _tee(src, sinks, last: list) -> None:
    fd = src.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        last[:] = [chunk[-1:]]
        for s in sinks:
            try:
                s.write(chunk)
                s.flush()
            except (OSError, ValueError):
                pass


def child_env(gpus: int = 1) -> dict:
    """A stage child's environment: this one, with CUDA_VISIBLE_DEVICES narrowed to the first `gpus` of the GPUs
    this process may use (the user's mask respected), so a child never sees every GPU (the Trainer would multiply
    its batch over them); on a machine without GPUs, unchanged."""
    from dialsum.hardware import visible_gpus

    env = {**os.environ, "PYTHONUNBUFFERED": "1", PROGRESS: "1" if progress_enabled() and not quiet() else "0"}
    visible = visible_gpus()
    if visible:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[:max(1, gpus)])
    return env


def worker_command(out: Path | list[Path], gpus: int = 1, launcher: str = "none") -> list[str]:
    """The stage child: one worker process (running one stage folder, or several in order), or (`train.launcher:
    torchrun`) torchrun starting `gpus` of them on this machine, each rank on one of the child's GPUs (LOCAL_RANK);
    rank 0 alone writes the stage's results."""
    worker = ["-m", "dialsum.engine.worker", *map(str, out if isinstance(out, list) else [out])]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *worker]
    return [sys.executable, *worker]


def run_child(out: Path | list[Path], log_path: Path, name: str, gpus: int = 1, launcher: str = "none") -> None:
    """The stage's worker (worker_command), its output shown live and copied to log_path; one line on failure."""
    from dialsum.hardware import visible_gpus

    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**child_env(gpus), WARNINGS_LOG: str(log_path)}
    with open(log_path, "ab") as logf:
        logf.write(f"\n==== {name} {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
        folders = [str(p) for p in (out if isinstance(out, list) else [out])]
        started = forked.start(folders, env) if forked.usable(env, bool(visible_gpus()), launcher) else None
        if started is not None:
            proc, output = started

            def wait() -> int:
                proc.join()
                return proc.exitcode
        else:
            proc = subprocess.Popen(worker_command(out, gpus, launcher), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, preexec_fn=forked.die_with_parent)
            output, wait = proc.stdout, proc.wait
        last: list = []
        sinks = [logf] if quiet() else [sys.stderr.buffer, logf]
        t = threading.Thread(target=_tee, args=(output, sinks, last), daemon=True)
        t.start()
        try:
            rc = wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; `kill` of this process alone did not: pass it on
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            wait()
            t.join(timeout=5)
            raise
        t.join(timeout=5)
        output.close()
    if last and last[0] not in (b"\n", b"") and not quiet():  # a progress bar left mid-line: end it cleanly
        sys.stderr.write("\n")
        sys.stderr.flush()
    if rc == PRUNED_EXIT:
        raise StagePruned(f"stage {name} pruned")
    if rc in (INTERRUPTED_EXIT, -signal.SIGINT):  # interrupted on its own (a signal to its process group)
        raise KeyboardInterrupt
    if rc != 0:
        why = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
        reason = _last_error_line(log_path)
        raise DialsumError(f"stage {name} failed ({why}{': ' + reason if reason else ''}); log: {log_path}")


def _last_error_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("dialsum: error: "):
            return line[len("dialsum: error: "):].strip()
    for line in reversed(lines):
        s = line.strip()
        if s and ("Error" in s.split(":")[0] or s.startswith("torch.OutOfMemoryError") or "MemoryError" in s):
            return s[:300]
    return ""


def log_name(stage_name: str) -> str:
    return stage_name.replace(":", "-").replace("/", "_") + ".log"
