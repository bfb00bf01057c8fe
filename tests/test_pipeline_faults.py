"""`dialsum run` under faults and concurrency: kill -9 at every kind of stage (and a training child killed by the
fault hook) resumed by the same command to the uninterrupted bytes, one writer per run folder, `--only-model`
processes at once, and `--parallel-models`. Model stages these tests do not exercise are copied from the session's
seed run (conftest.pipeline_seed), so each test trains only what it is about."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, run_cli
from pipelines import run_dir_of, run_in, seed_stages, statuses, submission_of, write_config

MODELS = ("tiny", "tiny-chat", "tiny-bart")


def _descendants(pid: int) -> list[int]:
    """Every process below pid: a stage child is forked by the fork server on CPU machines (a grandchild)."""
    try:
        children = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [d for c in children for d in (c, *_descendants(c))]


def _wait_for(proc, ready, timeout: float = 600.0) -> bool:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.02)
    return False


def _last_step(cache: Path) -> int:
    return max((int(p.parent.name.split("-")[1]) for p in cache.glob("train/*/checkpoints/checkpoint-*/trainer_state.json")),
               default=0)


def test_kill_9_across_stages_then_the_same_command_gives_the_same_bytes_and_one_writer(pipeline_seed, tmp_path):
    """One model from scratch: kill -9 of the model-building child; the training child killed by the fault hook at its
    step-18 checkpoint (one `dialsum: error:` line naming the stage, the signal and its log; no submission); kill -9 of
    the parent mid-training; of the generation child mid-part (plus a torn journal line); of the parent inside the
    ensemble stage. A second `dialsum run` on the busy folder stops with the lock message. The same command then
    finishes with the bytes of an uninterrupted run, its training history carried over every kill."""
    cfg = write_config(tmp_path / "one.yaml", keep_models=["tiny"])
    # the uninterrupted answer: the seed's stages of this model (computed without a kill), ensembled for this config
    seed_stages(pipeline_seed, tmp_path / "ref" / "runs", "build:tiny", "train:tiny", "generate:tiny")
    ref = run_in(tmp_path / "ref", cfg)
    assert ref.returncode == 0, ref.stderr[-2000:]
    st = statuses(run_dir_of(ref.stdout))
    assert st["build:tiny"] == st["train:tiny"] == st["generate:tiny"] == "cached", st
    want = submission_of(ref.stdout).read_bytes()

    out = tmp_path / "k"
    cache = out / "runs" / "cache"
    cmd = [sys.executable, "-m", "dialsum", "run", "--config", str(cfg), "--output-dir", str(out / "runs"),
           "--submissions-dir", str(out / "subs")]
    trained = {}
    points = [
        ("child", lambda: any(cache.glob("build/*/stage.json"))),
        ("fault", None),
        ("parent", lambda: _last_step(cache) > trained["before"]),
        ("child", lambda: any(cache.glob("generate/*/candidates/*.partial.jsonl"))),
        ("parent", lambda: any(cache.glob("ensemble/*/.lock"))),
    ]
    hits = []
    for n, (who, ready) in enumerate(points):
        trained["before"] = _last_step(cache)
        if who == "fault":  # the training child kills itself (as the OOM killer would) after its step-18 checkpoint
            r = run_cli(*cmd[3:], env={"DIALSUM_KILL_AFTER_STEPS": "18"})
            assert r.returncode == 2 and "Traceback" not in r.stderr
            errors = [ln for ln in r.stderr.splitlines() if ln.startswith("dialsum: error:")]
            assert len(errors) == 1 and "train:tiny" in errors[0] and "signal 9" in errors[0], errors
            assert "train-tiny.log" in errors[0]
            assert not (out / "subs").exists() or not list((out / "subs").iterdir())
            hits.append(_last_step(cache) == 18)
            continue
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if n == 0:  # one writer per run folder: a second run on the busy folder stops at once
            assert _wait_for(proc, lambda: any((out / "runs").glob("*/.lock")))
            second = run_cli(*cmd[3:])
            assert second.returncode == 2 and "in use by pid" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1
        hit = _wait_for(proc, ready)
        hits.append(hit)
        if hit and who == "parent":
            os.kill(proc.pid, signal.SIGKILL)
        elif hit:
            for child in _descendants(proc.pid):
                os.kill(child, signal.SIGKILL)
        proc.communicate(timeout=600)
        for journal in cache.glob("generate/*/candidates/*.partial.jsonl"):
            with open(journal, "a", encoding="utf-8") as f:  # the kill came in the middle of a journal write
                f.write('{"chunk": 1, "count": 8, "candidates": [{"fname": "dev_')
    # the kills landed mid-run (the generation and ensemble windows are short and polled: one may be missed)
    assert hits[0] and hits[1] and hits[2] and sum(hits) >= 4, hits
    r = run_cli(*cmd[3:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert submission_of(r.stdout).read_bytes() == want
    assert len(list((out / "subs").glob("*.csv"))) == 1
    train_dir = Path(json.loads((run_dir_of(r.stdout) / "manifest.json").read_text())["stages"]["train:tiny"]["dir"])
    state = json.loads(max((train_dir / "checkpoints").glob("checkpoint-*"),
                           key=lambda p: int(p.name.split("-")[1])).joinpath("trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps[0] < 18 < steps[-1]  # history from before the kills carried over: resumed, not restarted
    result = json.loads((train_dir / "train_result.json").read_text())  # the last training process counted its own
    assert result["resumed_from_step"] >= 18 and result["steps_this_process"] == result["global_step"] - result[
        "resumed_from_step"]


def test_only_model_processes_in_parallel_then_a_plain_run_gives_the_sequential_bytes(pipeline_seed, tmp_path):
    """README: several shells (GPUs, machines sharing output_dir) each take a model with `run --only-model`; all
    proceed at once (per-stage locks, the manifest merged under a lock) and a later plain `run` ensembles, giving
    the same submission bytes as the sequential run. Seeded with the trained models, tiny-bart's base and two of the
    generations: tiny and tiny-chat each build their own base (tiny-chat's has Llama-3's tokens and an untied head),
    then tiny generates while the other two processes find their generations done."""
    seed_stages(pipeline_seed, tmp_path / "runs", "build:tiny-bart", *(f"train:{m}" for m in MODELS),
                "generate:tiny-chat", "generate:tiny-bart")
    cmd = [sys.executable, "-m", "dialsum", "run", "--config", "configs/default.yaml", "--output-dir",
           str(tmp_path / "runs"), "--submissions-dir", str(tmp_path / "subs"), "--only-model"]
    procs = [subprocess.Popen(cmd + [m], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in MODELS]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outs]
    dirs = {o[0].split("run: ", 1)[1].split()[0] for o in outs}  # "run: DIR (only: NAME)"
    assert len(dirs) == 1
    run_dir = Path(dirs.pop())
    man = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert {f"{k}:{m}" for k in ("train", "generate") for m in MODELS} <= set(man)  # nobody dropped another's entry
    assert man["build:tiny"]["status"] == man["build:tiny-chat"]["status"] == "ran"
    assert [man[f"generate:{m}"]["status"] for m in MODELS] == ["ran", "cached", "cached"]
    r = run_in(tmp_path, "configs/default.yaml")
    assert r.returncode == 0, r.stderr[-2000:]
    st = statuses(run_dir_of(r.stdout))
    assert all(st[f"{k}:{m}"] == "cached" for k in ("train", "generate") for m in MODELS)
    assert submission_of(r.stdout).read_bytes() == submission_of(pipeline_seed.stdout).read_bytes()


def test_parallel_models_one_process_per_gpu_then_the_ensemble(pipeline_seed, tmp_path):
    """`run --parallel-models 2` on a machine showing 2 GPUs: each model's pipeline is a `run --only-model` process in
    a slot with its own GPU (3 models, 2 slots), then the ensemble; the bytes are the sequential run's. The seed's
    model stages are copied, so they are cache hits: this walks the command path, not the training."""
    seed_stages(pipeline_seed, tmp_path / "runs", *(f"{k}:{m}" for k in ("build", "train", "generate") for m in MODELS))
    r = run_in(tmp_path, "configs/default.yaml", "--parallel-models", "2", env={"DIALSUM_FAKE_GPUS": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    done = re.findall(r"(\S+): pipeline done on GPU (\d)", r.stderr)
    assert sorted(m for m, _ in done) == ["tiny", "tiny-bart", "tiny-chat"] and {g for _, g in done} <= {"0", "1"}
    assert submission_of(r.stdout).read_bytes() == submission_of(pipeline_seed.stdout).read_bytes()
    r = run_in(tmp_path, "configs/default.yaml", "--parallel-models", "3", env={"DIALSUM_FAKE_GPUS": "2"})
    assert r.returncode == 2 and "only 2 GPU(s) visible" in r.stderr
