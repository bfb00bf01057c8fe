"""`dialsum run` end to end on the shipped sample data with the embedded default config."""
from __future__ import annotations

import csv
import re

import pytest

from conftest import ROOT, SAMPLE, run_cli

STAGES = ["run", "build-tiny-model", "train", "generate", "ensemble", "postprocess", "submit", "score"]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    r = run_cli("run", "--config", "configs/default.yaml", "--output-dir", str(tmp / "runs"),
                "--submissions-dir", str(tmp / "subs"))
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


def test_submission_parses_back_in_sample_order(e2e):
    tmp, r = e2e
    subs = list((tmp / "subs").glob("*.csv"))
    assert len(subs) == 1 and f"submission: {subs[0]}" in r.stdout
    with open(subs[0], encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(SAMPLE / "sample_submission.csv", encoding="utf-8") as f:
        sample = list(csv.reader(f))
    assert rows[0] == sample[0] == ["", "fname", "summary"]
    assert [x[1] for x in rows[1:]] == [x[1] for x in sample[1:]]
    assert all(x[2].strip() for x in rows[1:])


def test_report_has_a_dev_score_for_every_stage(e2e):
    tmp, _ = e2e
    (run_dir,) = list((tmp / "runs").iterdir())
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    for stage in ("generate", "ensemble", "postprocess"):
        rows = re.findall(rf"^\| {stage} \| .*? \| ([0-9.]+) \|", report, flags=re.M)
        assert rows, stage
        assert all(0 <= float(x) <= 100 for x in rows)
    n_sources = len(re.findall(r"^\| generate \|", report, flags=re.M))
    assert n_sources == 6  # 2 models x 3 decodings
    assert (run_dir / "report.png").stat().st_size > 1000
    assert (run_dir / "config.snapshot.json").exists()
    # the models really learned: the fine-tuned greedy output beats an untrained model's (which scores ~0-20)
    greedy = [float(x) for x in re.findall(r"^\| generate \| tiny/greedy .*? \| ([0-9.]+) \|", report, flags=re.M)]
    assert greedy and greedy[0] > 30


def test_rerun_skips_finished_stages_and_does_not_overwrite(e2e):
    tmp, _ = e2e
    r = run_cli("run", "--config", "configs/default.yaml", "--output-dir", str(tmp / "runs"),
                "--submissions-dir", str(tmp / "subs"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training" not in r.stdout and "generating" not in r.stdout
    assert len(list((tmp / "subs").glob("*.csv"))) == 1


@pytest.mark.parametrize("stage", [None] + STAGES)
def test_help(stage):
    r = run_cli(*([stage] if stage else []), "--help")
    assert r.returncode == 0 and "usage: dialsum" in r.stdout
