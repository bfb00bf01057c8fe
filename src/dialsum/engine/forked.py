"""Stage children forked from a pre-imported interpreter: Python's fork server (`multiprocessing`'s "forkserver"
start method) imports torch, transformers and peft once (dialsum.models.preload) and forks one child per stage, so
a run's second and later stages skip the 8–12 s of imports a fresh interpreter repeats on a CPU.

Used only where forking is safe and equivalent: a machine whose children see no GPU (a CUDA context must never be
inherited), one process per stage (no torchrun), and an environment equal to the one the fork server started with
(libraries read some variables at import). Anything else, or `DIALSUM_STAGE_START=exec`, starts a fresh interpreter
as before (dialsum.engine.child). The child behaves as that interpreter would: its output goes to the parent's
pipe, it dies with its parent, Ctrl-C interrupts it, atexit handlers run, the exit code is the worker's."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys

from dialsum.logs import log

PRELOAD = ["dialsum.models.preload"]
_UNCHECKED = {"PYTHONUNBUFFERED", "DIALSUM_PROGRESS", "DIALSUM_WARNINGS_LOG"}  # set for every child; not read at import by the preloaded libraries

_state: dict = {}  # "context": the fork server's context, "env": what it started with, "broken": it cannot start


def die_with_parent() -> None:  # pragma: no cover - runs in the child (between fork and exec, or forked)
    """A stage child never outlives the process that started it (a killed `dialsum run` leaves no orphan holding
    the stage's lock or the GPU)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; non-Linux simply lacks it
        pass


def usable(env: dict, gpus_visible: bool, launcher: str) -> bool:
    """Whether this child may be forked from the fork server (see the module's docstring)."""
    if os.environ.get("DIALSUM_STAGE_START", "fork") == "exec" or gpus_visible or launcher != "none":
        return False
    if sys.platform != "linux" or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if _state.get("broken"):
        return False
    started = _state.get("env")
    if started is None:
        return True
    return {k: v for k, v in env.items() if k not in _UNCHECKED} == started


def start(folders: list[str], env: dict):
    """Fork the stage child for `folders`; returns (process, read end of its stdout+stderr pipe), or None when the
    fork server cannot start here (its socket lives under TMPDIR, and a socket path over ~107 bytes is refused):
    the caller then starts a fresh interpreter, as it will for every later child of this process."""
    if "context" not in _state:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _state["context"] = ctx
        _state["env"] = {k: v for k, v in os.environ.items() if k not in _UNCHECKED}
    ctx = _state["context"]
    read, write = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(folders, env, os.getcwd(), write), name="dialsum-stage")
    try:
        proc.start()
    except OSError as e:
        read.close()
        write.close()
        _state["broken"] = True
        log(f"stage children start as fresh interpreters: the fork server cannot start ({e})", logging.DEBUG)
        return None
    write.close()
    return proc, read


def child_main(folders: list[str], env: dict, cwd: str, out) -> None:  # pragma: no cover - runs in the child
    """The forked child: runs as `python -m dialsum.engine.worker FOLDERS` would, started with `env` in `cwd`."""
    import atexit
    import runpy
    import tempfile
    import threading

    die_with_parent()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the fork server ignores Ctrl-C; a stage does not
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    sys.stdout.reconfigure(line_buffering=True, write_through=True)  # as PYTHONUNBUFFERED does
    sys.stderr.reconfigure(line_buffering=True, write_through=True)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    tempfile.tempdir = None  # chosen again from this environment's TMPDIR
    sys.argv = ["-m", *folders]
    try:
        runpy.run_module("dialsum.engine.worker", run_name="__main__", alter_sys=True)  # exits with its code
    finally:  # a multiprocessing child ends in os._exit: run what a normal interpreter exit would
        for t in threading.enumerate():
            if t is not threading.current_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
