"""bench/gpu_rehearsal.py --tiny on CPU, so the GPU rehearsal cannot rot between GPU runs: every stage of the plan
(a DPO align stage after SFT and an 8-bit generation included) runs through the stage engine and the JSON has every
field for every stage."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

FIELDS = {"stage", "status", "wall_s", "train_tokens_per_s", "gen_tokens_per_s", "planned_gpu_mib", "peak_gpu_mib",
          "gpu_mib_after", "baseline_gpu_mib", "back_to_baseline"}


def test_tiny_rehearsal_runs_every_stage_and_records_every_field(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_rehearsal.py"), "--tiny", "--out", str(tmp_path / "r"),
                        "--budget-s", "900", "--card", "rtx3090"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("rehearsal plan (tiny, backend hf")  # the plan comes before any work
    out = json.loads((tmp_path / "r" / "rehearsal.json").read_text())
    stages = [s["stage"] for s in out["stages"]]
    assert stages == ["build:decoder", "build:seq2seq", "train:solar-shape", "prefs:solar-shape", "align:solar-shape",
                      "generate:solar-shape", "train:kobart-shape", "generate:kobart-shape", "ensemble", "postprocess",
                      "submit", "generate:solar-shape (8bit)"]
    for s in out["stages"]:
        assert set(s) == FIELDS and s["status"] == "ok" and isinstance(s["wall_s"], float), s
        if s["stage"].startswith(("build", "train", "generate")):
            assert s["wall_s"] > 0, s
    by = {s["stage"]: s for s in out["stages"]}
    assert by["train:solar-shape"]["train_tokens_per_s"] > 0 and by["train:kobart-shape"]["train_tokens_per_s"] > 0
    assert by["generate:solar-shape"]["gen_tokens_per_s"] > 0 and by["generate:kobart-shape"]["gen_tokens_per_s"] > 0
    assert "| stage | status | wall s |" in (tmp_path / "r" / "rehearsal.md").read_text()
    for name in ("train:solar-shape", "prefs:solar-shape", "align:solar-shape", "generate:solar-shape",
                 "train:kobart-shape", "generate:kobart-shape", "generate:solar-shape (8bit)"):
        assert by[name]["planned_gpu_mib"] > 0  # the dry-run plan, beside the measured peak on a GPU
    assert by["generate:solar-shape (8bit)"]["gen_tokens_per_s"] > 0
    assert list((tmp_path / "r" / "subs").glob("rehearsal-*.csv"))

    # the measured utilisation (here of 2 CPU cores against an RTX 3090: tiny, but the path a GPU run takes) is what
    # `train --dry-run --rehearsal` then plans with for that card
    got = out["throughput"]
    assert got["card"] == "rtx3090" and set(got["utilisation"]) == {"qlora", "full", "prefill", "decode"}
    assert all(0 < v <= 1 for v in got["utilisation"].values())
    plan = json.loads(subprocess.run([sys.executable, "-m", "dialsum", "train", "--dry-run", "--config",
                                      "configs/competition.yaml", "--gpu", "rtx3090", "--json", "--rehearsal",
                                      str(tmp_path / "r" / "rehearsal.json")], cwd=ROOT, capture_output=True,
                                     text=True, timeout=300, check=True).stdout)
    assert str(tmp_path / "r" / "rehearsal.json") in plan["utilisation_source"]
    assert plan["utilisation"]["qlora"] == got["utilisation"]["qlora"]


def test_the_budget_stops_cleanly_before_a_stage_that_would_not_fit(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_rehearsal.py"), "--tiny", "--out", str(tmp_path / "r"),
                        "--budget-s", "10"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((tmp_path / "r" / "rehearsal.json").read_text())
    assert all(s["status"] == "skipped (budget)" for s in out["stages"]) and len(out["stages"]) == 2
