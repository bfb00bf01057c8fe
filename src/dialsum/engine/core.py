"""The stage engine: every stage is a function of declared inputs, its output keyed by a hash of exactly those.

A `Stage` names the function that computes it, the inputs it is keyed by (config sections, data hashes, upstream
keys: JSON data, nothing else) and a context that does not change the output (where files are, worker counts).
Its output lives in `<output_dir>/cache/<kind>/<key>/`; `meta.json`, written last, marks it done. A run folder only
points at keys (manifest.json), so an edited config re-runs exactly the stages whose keys changed, under any run id,
and nothing stale can be read: a different input is a different folder.

Stages that load a model (`child=True`) run in a spawned child process (`python -m dialsum.engine.worker DIR`,
started by dialsum.engine.child): the parent never imports torch, so GPU memory returns to baseline between models;
the child's output is shown live and kept in `runs/<id>/logs/<stage>.log`. Each stage folder is guarded by an
advisory lock (flock), so two processes never compute the same key at once, and a stage killed mid-way resumes in
place (Trainer checkpoints, generation journals).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import logging
import os
import shutil
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dialsum.engine.child import log_name, run_child
from dialsum.logs import log
from dialsum.errors import DialsumError
from dialsum.io.files import atomic_write_json

META = "meta.json"
SPEC = "stage.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Stage:
    name: str                  # e.g. "train:tiny"; also the log file's name
    kind: str                  # cache folder: train, generate, ensemble, ...
    version: int               # bump when the stage's code changes what it writes
    fn: str                    # "module:function", called as fn(inputs, context, out_dir) -> dict
    inputs: dict               # keyed: everything the output depends on
    context: dict = field(default_factory=dict)  # not keyed: paths, workers
    child: bool = False        # run in a spawned child process (loads a model)
    deps: tuple[str, ...] = ()  # upstream stage names (for --force/--from-stage propagation)

    @property
    def key(self) -> str:
        return hash_json({"kind": self.kind, "version": self.version, "inputs": self.inputs})[:20]

    def out_dir(self, cache: Path) -> Path:
        return Path(cache) / self.kind / self.key


def cached_result(stage: Stage, cache: Path) -> dict | None:
    meta = stage.out_dir(cache) / META
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))["result"]
    except (json.JSONDecodeError, KeyError):
        return None


def dist_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def stage_lock(out: Path, name: str):
    """Exclusive flock on the stage folder; released by the kernel if the holder dies (kill -9 included)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            log(f"{name}: waiting for {holder}, which is computing the same stage")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename}")
        f.flush()
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


_HELD: dict[str, object] = {}  # run folders this process holds (the file stays open, so the flock stays)


def hold_run_folder(run_dir: Path, scope: str | None = None) -> None:
    """One writer per run folder: an exclusive flock on run_dir/.lock for this process's lifetime, naming its holder.

    A second `dialsum run/train/generate/tune` on the same folder stops with one line naming the holder; a lock left
    by a dead process is no lock at all (the kernel drops flocks with their process), so it is simply taken over.
    `scope` (e.g. the models of `run --only-model`) takes `.lock-<scope>` instead, so processes working on different
    models share the folder: stage folders have their own locks and the manifest is merged under one."""
    key = str(Path(run_dir).resolve()) + (f"#{scope}" if scope else "")
    if key in _HELD or dist_rank()[0] != 0:
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    f = open(Path(run_dir) / (f".lock-{scope}" if scope else ".lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise DialsumError(f"{run_dir}: in use by {holder}; wait for it to finish (or stop it), then run the same "
                           f"command again") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    _HELD[key] = f


def resolve(path: str) -> Callable:
    """The function a "module:function" string names (stage functions and context callbacks are named, not pickled,
    so a stage folder says in JSON what computes it)."""
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func)


def execute(out: Path) -> dict:
    """Run the stage described in out/stage.json in this process and mark it done (meta.json written last)."""
    spec = json.loads((out / SPEC).read_text(encoding="utf-8"))
    fn = resolve(spec["fn"])
    started = time.time()
    result = fn(spec["inputs"], spec["context"], out)
    rank, _ = dist_rank()
    if rank == 0:
        atomic_write_json(out / META, {"stage": spec["name"], "key": spec["key"], "result": result,
                                       "seconds": round(time.time() - started, 3),
                                       "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    return result


class Engine:
    """Runs stages against one cache folder, recording in a run folder's manifest what each stage resolved to."""

    def __init__(self, cache: Path, run_dir: Path, in_process: bool = False):
        self.cache = Path(cache)
        self.run_dir = Path(run_dir)
        self.in_process = in_process  # torchrun workers: every rank runs the stage itself
        self.manifest_path = self.run_dir / "manifest.json"
        self.manifest = self._load_manifest()
        self.ran: list[str] = []
        self.started = _process_started()

    def _load_manifest(self) -> dict:
        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and isinstance(data.get("stages"), dict):
                    return data
            except json.JSONDecodeError:
                pass
        return {"stages": {}}

    def record(self, stage: Stage, result: dict, status: str) -> None:
        entry = {"key": stage.key, "dir": str(stage.out_dir(self.cache)), "status": status, "result": result,
                 "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._update(lambda m: m["stages"].__setitem__(stage.name, entry))

    def set(self, key: str, value) -> None:
        self._update(lambda m: m.__setitem__(key, value))

    def _update(self, change) -> None:
        """Apply one change to the manifest on disk (re-read under a lock, so processes sharing the run folder, e.g.
        `run --only-model A` and `--only-model B`, never drop each other's entries) and to this copy."""
        change(self.manifest)
        if dist_rank()[0] != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".manifest.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            disk = self._load_manifest()
            change(disk)
            for k, v in self.manifest.items():  # this process's run-level keys win; stage entries are merged
                if k != "stages":
                    disk[k] = v
            atomic_write_json(self.manifest_path, disk)
            self.manifest = disk

    def done(self, stage: Stage) -> dict | None:
        return cached_result(stage, self.cache)

    def run(self, stage: Stage, force: bool = False) -> dict:
        out = stage.out_dir(self.cache)
        rank, world = dist_rank()
        if not force:
            hit = cached_result(stage, self.cache)
            if hit is not None:
                log(f"{stage.name}: cached (key {stage.key})", logging.DEBUG)
                self.record(stage, hit, "cached")
                return hit
        if rank != 0 and not (self.in_process and stage.kind == "train"):
            return self._wait_for_rank0(stage)
        if rank != 0:  # `torchrun -m dialsum train`: rank 0 alone clears the folder and writes the spec; ranks join it
            _wait_for_spec(out, self.started)
            result = execute(out)
            self.ran.append(stage.name)
            return result
        with stage_lock(out, stage.name):
            hit = None if force else cached_result(stage, self.cache)  # computed meanwhile by another process
            if hit is not None:
                self.record(stage, hit, "cached")
                return hit
            if force:
                for p in out.iterdir():
                    if p.name != ".lock":
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            self._write_spec(stage)
            if stage.child and not self.in_process:
                run_child(out, self.run_dir / "logs" / log_name(stage.name), stage.name,
                          stage.context.get("gpus", 1), stage.context.get("launcher", "none"))
                result = cached_result(stage, self.cache)
                if result is None:
                    raise DialsumError(f"stage {stage.name}: the child exited without marking {out / META}")
            else:
                result = execute(out)
        self.ran.append(stage.name)
        self.record(stage, result, "ran")
        return result

    def run_together(self, stages: list[Stage]) -> list[dict]:
        """Child stages that follow each other (a tuning trial's training, then its dev-select scoring) in ONE child
        process, in order: each keeps its key, folder, lock and meta.json, so a kill between them leaves the first
        done and the same call resumes at the second. What is saved per extra stage is a process start, the
        libraries' import and (on a GPU) CUDA's start-up. Stages that cannot share a child (torchrun, other GPU
        counts, workers of a launch) run one by one, as `run` runs them."""
        results: dict[str, dict] = {}
        for s in stages:
            hit = cached_result(s, self.cache)
            if hit is not None:
                log(f"{s.name}: cached (key {s.key})", logging.DEBUG)
                self.record(s, hit, "cached")
                results[s.name] = hit
        todo = [s for s in stages if s.name not in results]
        launches = {(s.context.get("gpus", 1), s.context.get("launcher", "none")) for s in todo}
        if len(todo) < 2 or not all(s.child for s in todo) or self.in_process or dist_rank()[0] != 0 \
                or len(launches) != 1 or next(iter(launches))[1] != "none":
            return [results[s.name] if s.name in results else self.run(s) for s in stages]
        with ExitStack() as held:
            for s in todo:  # always in dependency order, so two processes never hold them crosswise
                held.enter_context(stage_lock(s.out_dir(self.cache), s.name))
            pending = []
            for s in todo:
                hit = cached_result(s, self.cache)  # computed meanwhile by another process
                if hit is not None:
                    self.record(s, hit, "cached")
                    results[s.name] = hit
                    continue
                self._write_spec(s)
                pending.append(s)
            if pending:
                name = " + ".join(s.name for s in pending)
                run_child([s.out_dir(self.cache) for s in pending], self.run_dir / "logs" / log_name(pending[0].name),
                          name, pending[0].context.get("gpus", 1))
                for s in pending:
                    result = cached_result(s, self.cache)
                    if result is None:
                        raise DialsumError(f"stage {s.name}: the child exited without marking "
                                           f"{s.out_dir(self.cache) / META}")
                    self.ran.append(s.name)
                    self.record(s, result, "ran")
                    results[s.name] = result
        return [results[s.name] for s in stages]

    def _write_spec(self, stage: Stage) -> None:
        out = stage.out_dir(self.cache)
        atomic_write_json(out / SPEC, {"name": stage.name, "kind": stage.kind, "key": stage.key,
                                       "version": stage.version, "fn": stage.fn, "inputs": stage.inputs,
                                       "context": stage.context, "launch": launch_id()})
        log(f"{stage.name}: running (key {stage.key})")
        log(f"{stage.name}: inputs {json.dumps(stage.inputs, sort_keys=True, ensure_ascii=False)[:2000]}",
            logging.DEBUG)

    def _wait_for_rank0(self, stage: Stage) -> dict:
        while True:
            hit = cached_result(stage, self.cache)
            if hit is not None:
                return hit
            time.sleep(1.0)


def _process_started() -> float:
    """When this process started (torchrun starts every rank at once; rank 0 writes its spec only after that)."""
    try:  # Linux: field 22 of /proc/self/stat, clock ticks after boot (/proc/stat's btime)
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(x.split()[1]) for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):  # elsewhere: a little before the Engine's creation
        return time.time() - 30


def launch_id() -> str | None:
    """The id torchrun (and accelerate launch) gives every rank of one launch; None outside one."""
    return os.environ.get("TORCHELASTIC_RUN_ID") if dist_rank()[1] > 1 else None


def _wait_for_spec(out: Path, since: float) -> None:
    """Until rank 0 of this launch has cleared the stage folder (--force) and written its spec: the launch's id, and
    written after this rank started (a plain `torchrun` without --rdzv-id gives every launch the id "none")."""
    me = launch_id()
    while True:
        try:
            spec = out / SPEC
            if spec.stat().st_mtime >= since - 2 and json.loads(spec.read_text(encoding="utf-8")).get("launch") == me:
                return
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
