"""Data-parallel training through torchrun on CPU (2 ranks, gloo), as on a node with several GPUs (#21 items 1, 5):
`train.launcher: torchrun` makes the train stage's child torchrun itself; `torchrun -m dialsum train --force` has
rank 0 alone clear and write the stage folder; rank 0 scores dev and every rank takes its numbers, so early stopping
stops every rank at the same step (a divergence would hang the run: the test would time out)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from pipelines import seed_stages, write_config

# tiny-bart full fine-tuning, short: evaluations every 2 steps and patience 1, so early stopping can end it early
SHORT = ["--set", "models.tiny-bart.train.epochs=6", "--set", "models.tiny-bart.train.eval_steps=2",
         "--set", "models.tiny-bart.train.early_stopping_patience=1", "--set", "models.tiny-bart.train.eval_subset=4",
         "--set", "models.tiny-bart.train.logging_steps=2"]


def _cli(args: list[str], tmp: Path, torchrun: int = 0) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    return subprocess.run([*head, "-m", "dialsum", *args, "--output-dir", str(tmp / "runs")], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=900)


def _train_dir(tmp: Path) -> Path:
    runs = [p for p in (tmp / "runs").iterdir() if p.is_dir() and (p / "manifest.json").is_file()]
    man = json.loads((runs[0] / "manifest.json").read_text())
    return Path(man["stages"]["train:tiny-bart"]["dir"])


def _intact(out: Path, world: int) -> dict:
    files = {p.name for p in out.iterdir()}
    assert {"stage.json", "meta.json", "model", "train_result.json"} <= files, files
    assert not [p for p in out.rglob("*.tmp")], "a half-written file"
    res = json.loads((out / "train_result.json").read_text())
    assert res["world_size"] == world
    return res


def test_launcher_torchrun_then_torchrun_force_leaves_one_intact_stage_folder(tmp_path, pipeline_seed):
    seed_stages(pipeline_seed, tmp_path / "runs", "build:tiny-bart")  # the base model; the training is the test
    cfg = write_config(tmp_path / "c.yaml", keep_models=["tiny-bart"])
    launched = ["--set", "models.tiny-bart.train.launcher=torchrun", "--set", "models.tiny-bart.train.nproc=2"]
    r = _cli(["train", "--config", str(cfg), *SHORT, *launched], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = _train_dir(tmp_path)
    res = _intact(out, 2)
    # early stopping (patience 1) ended every rank at the first evaluation after the best one, before the planned end
    import math

    from conftest import SAMPLE
    from dialsum.io.data import load_competition

    planned = math.ceil(len(load_competition(SAMPLE).train) / (8 * 2)) * 6  # batch 8 per rank, 2 ranks, 6 epochs
    scores = [h["eval_dev_final"] for h in res["dev_history"]]
    assert res["global_step"] < planned and scores.index(max(scores)) == len(scores) - 2, (res, planned)
    # the same stage, forced, from a user-level torchrun: every rank runs the command; rank 0 alone clears
    before = (out / "meta.json").read_text()
    r = _cli(["train", "--config", str(cfg), *SHORT, *launched, "--force"], tmp_path, torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _train_dir(tmp_path) == out  # the same key: the same folder, redone in place
    res2 = _intact(out, 2)
    assert (out / "meta.json").read_text() != before  # it really ran again
    assert res2["dev_history"] == res["dev_history"] and res2["global_step"] == res["global_step"]
