"""Alignment through `dialsum run`: the prefs and align stages in the plan, a kill -9 mid-align resumed by the same
command, a beta change re-running only align and what follows, preference data from train only with rewards equal to
`dialsum score`, the report's SFT and aligned rows, and `dialsum tune --space align` over the same stages."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml

from conftest import SAMPLE, run_cli
from test_align import _dialsum_score
from pipelines import run_dir_of, run_in, seed_stages, statuses, write_config


def _align_config(path: Path) -> Path:
    def edit(c):
        c["output_dir"] = str(path.parent / "runs")  # where run_in puts runs too: one stage cache
        c["models"][0]["decodings"] = [{"name": "greedy"}]
        c["models"][0]["align"] = {"method": "dpo", "rows": 16, "samples": 4, "steps": 8, "save_steps": 4,
                                   "batch_size": 4, "learning_rate": 5.0e-4, "eval_rows": 6}
        return c
    return write_config(path, edit, keep_models=["tiny"])


def test_align_in_a_run_killed_resumed_reused_and_reported(tmp_path, pipeline_seed):
    from dialsum.io.data import load_competition

    seed_stages(pipeline_seed, tmp_path / "runs", "build:tiny", "train:tiny")  # base and SFT: the default run's
    cfg = _align_config(tmp_path / "align.yaml")
    r = run_in(tmp_path, cfg, env={"DIALSUM_KILL_AFTER_STEPS": "align:4"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("dialsum: error:")]
    assert len(errors) == 1 and "align:tiny" in errors[0] and "signal 9" in errors[0]
    assert not (tmp_path / "subs").exists() or not list((tmp_path / "subs").iterdir())

    r = run_in(tmp_path, cfg)  # the same command resumes
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = run_dir_of(r.stdout)
    st = statuses(run_dir)
    assert st["train:tiny"] == st["prefs:tiny"] == "cached" and st["align:tiny"] == "ran"
    man = json.loads((run_dir / "manifest.json").read_text())["stages"]
    align_dir = Path(man["align:tiny"]["dir"])
    state = json.loads(max((align_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                       .joinpath("trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))  # steps 1-4 from before the kill, 5-8 after: resumed, not restarted
    result = json.loads((align_dir / "align_result.json").read_text())
    assert result["steps"] == 8 and result["sft"]["select"]["n"] == 6
    assert (result["resumed_from_step"], result["steps_this_process"]) == (4, 4)  # resumed, not restarted
    _generation_follows_the_decision(man, "tiny")

    # preference data: train rows only, each score exactly `dialsum score` of that text against that reference
    data = load_competition(SAMPLE)
    prefs_csv = Path(man["prefs:tiny"]["dir"]) / "preferences.csv"
    with open(prefs_csv, newline="", encoding="utf-8") as f:
        prefs = list(csv.DictReader(f))
    assert list(prefs[0]) == ["fname", "candidate", "score", "rank"]
    names = {p["fname"] for p in prefs}
    assert names <= {d.fname for d in data.train} and not names & {d.fname for d in data.dev + data.test}
    refs = {d.fname: d.summary for d in data.train}
    for p in random.Random(1).sample(prefs, 3):
        assert float(p["score"]) == _dialsum_score(p["fname"], p["candidate"], refs[p["fname"]], tmp_path)

    # the report: an SFT row and an aligned row on dev-select and dev-report, the curve plotted
    report = (run_dir / "report.md").read_text()
    sft_row = next(ln for ln in report.splitlines() if ln.startswith("| align | tiny: SFT (greedy)"))
    aligned_row = next(ln for ln in report.splitlines() if ln.startswith("| align | tiny: aligned by dpo"))
    assert sft_row.count("—") == 0 and aligned_row.count("—") == 0
    assert "## Alignment after SFT" in report and (run_dir / "align.png").is_file()
    scores = json.loads((run_dir / "scores.json").read_text())["rows"]
    assert [r["detail"] for r in scores if r["stage"] == "align"][0] == "tiny: SFT (greedy)"

    # the tracker has the align curve, step by step, as the result file has it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tensorboard" / "dialsum"))
    ea.Reload()
    margins = [(e.step, e.value) for e in ea.Scalars("align/tiny/reward_margin")]
    assert margins == [(c["step"], pytest.approx(c["reward_margin"], abs=1e-6)) for c in result["curve"]
                       if "reward_margin" in c]

    # changing only beta: SFT and the samples are reused, align and everything after it re-run; the keep decision
    # is forced the other way (a test hook), so generation is seen following both decisions
    opposite = "never" if result["kept"] else "always"
    r = run_in(tmp_path, cfg, "--set", "models.tiny.align.beta=0.3", env={"DIALSUM_ALIGN_KEEP": opposite})
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((run_dir_of(r.stdout) / "manifest.json").read_text())["stages"]
    assert _generation_follows_the_decision(again, "tiny") == (opposite == "always")
    st = statuses(run_dir_of(r.stdout))
    assert {k for k, v in st.items() if v == "cached"} == {"build:tiny", "train:tiny", "prefs:tiny"}
    assert {k for k, v in st.items() if v == "ran"} == {"align:tiny", "generate:tiny", "ensemble", "postprocess",
                                                        "submit"}

    # the align space: a trial samples beta and the alignment learning rate and runs the same align stage (the
    # enqueued untuned values are a cache hit), then the held-out check on dev-report
    tune_yaml = tmp_path / "tune.yaml"
    tune_yaml.write_text(json.dumps({"study": "t-align", "run_config": str(cfg), "model": "tiny", "space": "align",
                                     "pruner": {"name": "none"},
                                     "enqueue": [{"beta": 0.1, "align_learning_rate": 5.0e-4}]}), encoding="utf-8")
    r = run_cli("tune", "--config", str(tune_yaml), "--trials", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "tune" / "t-align" / "summary.json").read_text())
    assert summary["space"] == "align" and summary["best_params"] == {"beta": 0.1, "align_learning_rate": 5.0e-4}
    assert summary["check"]["tuned"]["report"] == summary["check"]["default"]["report"]  # the same config, twice
    tuned = yaml.safe_load(Path(summary["tuned_config"]).read_text(encoding="utf-8"))
    assert tuned["models"][0]["align"]["beta"] == 0.1 and tuned["models"][0]["align"]["method"] == "dpo"


def _generation_follows_the_decision(stages: dict, model: str) -> bool:
    """The generate stage's candidates name the weights it loaded: the align stage's when it kept them, else SFT's;
    the kept weights are the stage's `adapter/` and the greedy dev-select scores it decided on were generated with
    them. Returns the decision."""
    align_dir = Path(stages[f"align:{model}"]["dir"])
    result = json.loads((align_dir / "align_result.json").read_text())
    with open(stages[f"generate:{model}"]["result"]["parts"][0], newline="", encoding="utf-8") as f:
        labels = {row["adapter"] for row in csv.DictReader(f)}
    assert labels == {f"align:{stages[f'align:{model}']['key']}:{'aligned' if result['kept'] else 'sft'}"}
    assert (align_dir / "adapter").is_dir() == result["kept"] and not (align_dir / "candidate").exists()
    if result["kept"]:
        assert result["weights"] == str(align_dir / "adapter")
    return result["kept"]
