"""The endgame through the CLI: `dialsum run --set final.refit=true` retrains every model on train + dev for its
chosen steps and writes <run-id>-final.csv beside the run's own submission (both valid); the selection stages never
trained on a dev row, the refit ones on every one; a second run recomputes nothing. With pseudo-labels, the probe
trains on dev-report's dialogues with the ensemble's picks (never the references) and dev-report scores it."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from conftest import SAMPLE, run_cli
from pipelines import run_dir_of, run_in, seed_stages, statuses, submission_of


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _valid_submission(path: Path) -> list[str]:
    """Parsed back: the sample submission's header and fnames in its order, every summary non-empty."""
    sample = _rows(SAMPLE / "sample_submission.csv")
    got = _rows(path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",fname,summary"
    assert [r["fname"] for r in got] == [r["fname"] for r in sample]
    assert all(r["summary"].strip() for r in got)
    return [r["summary"] for r in got]


def _seeded(pipeline_seed, tmp: Path) -> None:
    seed_stages(pipeline_seed, tmp / "runs", *pipeline_seed.manifest["stages"])


def _stage_dir(run_dir: Path, name: str) -> Path:
    return Path(json.loads((run_dir / "manifest.json").read_text())["stages"][name]["dir"])


def test_the_refit_trains_on_every_dev_row_writes_both_submissions_and_reruns_nothing(pipeline_seed, tmp_path):
    _seeded(pipeline_seed, tmp_path)
    r = run_in(tmp_path, "configs/default.yaml", "--set", "final.refit=true")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = run_dir_of(r.stdout)
    assert run_dir.name == pipeline_seed.run_dir.name  # the refit does not change the run id
    usual = submission_of(r.stdout)
    final = Path(next(ln for ln in r.stdout.splitlines() if ln.startswith("final submission")).split(": ", 1)[1])
    assert usual.name == f"{run_dir.name}.csv" and final.name == f"{run_dir.name}-final.csv"
    assert usual.parent == final.parent
    _valid_submission(usual)
    _valid_submission(final)

    st = statuses(run_dir)
    models = ("tiny", "tiny-chat", "tiny-bart")
    assert all(st[f"{k}:{m}"] == "cached" for k in ("train", "generate") for m in models)
    assert st["ensemble"] == st["postprocess"] == "cached"
    assert all(st[f"{k}:{m}"] == "ran" for k in ("refit", "generate-final") for m in models) and st["final"] == "ran"

    train = {d["fname"] for d in _rows(SAMPLE / "train.csv")}
    dev = {d["fname"] for d in _rows(SAMPLE / "dev.csv")}
    test = [d["fname"] for d in _rows(SAMPLE / "test.csv")]
    for m in models:
        selected = json.loads((_stage_dir(run_dir, f"train:{m}") / "trained_rows.json").read_text())
        refit = json.loads((_stage_dir(run_dir, f"refit:{m}") / "trained_rows.json").read_text())
        assert set(selected["fnames"]) == train and not set(selected["fnames"]) & dev  # selection: no dev row
        assert set(refit["fnames"]) == train | dev  # the refit: every dev row (and every train row)
        history = json.loads((_stage_dir(run_dir, f"train:{m}") / "train_result.json").read_text())["dev_history"]
        best = max(h["eval_dev_final"] for h in history)
        chosen = min(h["step"] for h in history if h["eval_dev_final"] == best)
        steps = math.ceil(chosen * (len(train) + len(dev)) / len(train))
        done = json.loads((_stage_dir(run_dir, f"refit:{m}") / "train_result.json").read_text())
        assert refit["fixed_steps"] == steps == done["global_step"] and done["dev_history"] == []
        parts = list((_stage_dir(run_dir, f"generate-final:{m}") / "candidates").glob("*.csv"))
        assert parts and all({c["fname"] for c in _rows(p)} == set(test) for p in parts)  # test only
    # the dev-fitted choices are applied unchanged: fed the selection models' test candidates instead of the refit
    # ones, the final stage's choice gives exactly the run's own submission
    from dialsum.config import MetricSpec
    from dialsum.stages.final import choose

    spec = json.loads((_stage_dir(run_dir, "final") / "stage.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    selection_parts = [x for m in models for x in manifest[f"generate:{m}"]["result"]["parts"]]
    same, _ = choose(selection_parts, test, spec["context"], MetricSpec(**spec["inputs"]["metric"]))
    order = [r["fname"] for r in _rows(SAMPLE / "sample_submission.csv")]
    assert [same[f] for f in order] == _valid_submission(usual)
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Final refit" in report and "No dev number exists for the refit models" in report
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Final refit" in page and "No dev number exists for the refit models" in page and final.name in page

    before = sorted(p.name for p in usual.parent.iterdir())
    again = run_in(tmp_path, "configs/default.yaml", "--final")  # the flag is the same config edit
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(statuses(run_dir).values()) == {"cached"}
    assert "running" not in again.stderr
    assert sorted(p.name for p in usual.parent.iterdir()) == before  # nothing new, nothing overwritten
    logged = run_cli("submitted", str(final), "--public", "40.5")  # the refit's upload goes in the log too
    assert logged.returncode == 0, logged.stderr
    assert f"{final.name} (run {run_dir.name})" in logged.stdout


def test_pseudo_labels_are_measured_on_dev_report_with_the_ensembles_picks_never_the_references(pipeline_seed,
                                                                                              tmp_path):
    _seeded(pipeline_seed, tmp_path)
    r = run_in(tmp_path, "configs/default.yaml", "--final", "--set", "final.pseudo_label=true")
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = run_dir_of(r.stdout)
    final = next(ln for ln in r.stdout.splitlines() if ln.startswith("final submission")).split(": ", 1)[1]
    assert final.endswith(f"{run_dir.name}-final-pseudo.csv")
    _valid_submission(Path(final))

    report_rows = {d["fname"] for d in _rows(run_dir / "dev_report.csv")}
    picks = {p["fname"]: p["summary"] for p in _rows(_stage_dir(run_dir, "ensemble") / "picks.csv")}
    refs = {d["fname"]: d["summary"] for d in _rows(SAMPLE / "dev.csv")}
    test = {d["fname"] for d in _rows(SAMPLE / "test.csv")}
    for m in ("tiny", "tiny-chat", "tiny-bart"):
        probe = _rows(_stage_dir(run_dir, f"refit-probe:{m}") / "pseudo_rows.csv")
        assert {p["fname"] for p in probe} == report_rows
        assert all(p["summary"] == picks[p["fname"]] for p in probe)
        assert sum(p["summary"] != refs[p["fname"]] for p in probe) > len(probe) // 2  # picks, not references
        trained = json.loads((_stage_dir(run_dir, f"refit-probe:{m}") / "trained_rows.json").read_text())
        assert not set(trained["fnames"]) & (set(refs) - report_rows)  # dev-select stays out of the probe
        pseudo = _rows(_stage_dir(run_dir, f"refit:{m}") / "pseudo_rows.csv")
        assert {p["fname"] for p in pseudo} == test and all(p["summary"] == picks[p["fname"]] for p in pseudo)
    probe = json.loads((_stage_dir(run_dir, "final") / "final.json").read_text())["pseudo_label_probe"]
    assert probe["n"] == len(report_rows) and probe["ci_low"] <= probe["diff"] <= probe["ci_high"]
    assert abs(probe["with"] - probe["without"] - probe["diff"]) < 1e-9
    assert "Pseudo-labels measured on dev-report" in (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Pseudo-labels measured on dev-report" in (run_dir / "report.html").read_text(encoding="utf-8")
