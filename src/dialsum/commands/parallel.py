"""`dialsum run --parallel-models N`: each model's pipeline as its own `dialsum run --only-model NAME` process, at most
N at a time, the process in slot i seeing only GPU i. No queue service: a thread per slot waits on its process; the
stage engine's per-model run-folder locks, per-stage locks and the merged manifest let the processes share the run."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from dialsum.config import RunConfig
from dialsum.logs import log
from dialsum.errors import DialsumError
from dialsum.hardware import visible_gpus


def child_argv(argv: list[str], name: str) -> list[str]:
    """This command's own arguments without --parallel-models, for one model, quiet (logs go to the run folder)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--parallel-models":
            skip = True
        elif not a.startswith("--parallel-models="):
            out.append(a)
    return [*out, "--only-model", name] + ([] if "--quiet" in out or "--verbose" in out else ["--quiet"])


def run_models_in_parallel(cfg: RunConfig, n: int, argv: list[str] | None = None) -> None:
    gpus = visible_gpus()
    if gpus and n > len(gpus):
        raise DialsumError(f"--parallel-models {n}: only {len(gpus)} GPU(s) visible ({','.join(gpus)}); one process "
                           f"per GPU")
    slots: queue.Queue = queue.Queue()
    for i in range(n):
        slots.put(gpus[i] if gpus else None)
    argv = list(sys.argv[1:] if argv is None else argv)

    def one(name: str) -> tuple[str, int, str]:
        gpu = slots.get()
        try:
            env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})}
            log(f"{name}: pipeline started{f' on GPU {gpu}' if gpu is not None else ''}")
            p = subprocess.run([sys.executable, "-m", "dialsum", *child_argv(argv, name)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            log(f"{name}: pipeline {'done' if p.returncode == 0 else f'failed (exit {p.returncode})'}"
                f"{f' on GPU {gpu}' if gpu is not None else ''}")
            return name, p.returncode, (p.stderr.strip().splitlines() or [""])[-1]
        finally:
            slots.put(gpu)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, [m.name for m in cfg.models]))
    failed = [f"{name} (exit {rc}: {why})" for name, rc, why in results if rc != 0]
    if failed:
        raise DialsumError(f"--parallel-models: {'; '.join(failed)}")
