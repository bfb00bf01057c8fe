"""What a competitor meets on real data, through the CLI: a re-saved data folder reuses every stage, Ctrl-C and kill
stop in one line and the rerun says what it resumes, a run's candidates ensemble with outside predictions, infer
tuning says "no" when the tuned config submits what the untuned one does, a smoke mode with its own submission and
the baselines every report shows, `--set` over every model, and a new decoding computed alone."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, SAMPLE, run_cli
from pipelines import run_dir_of, run_in, seed_stages, statuses, write_config


def _resave(src: Path, dst: Path, edit=None) -> Path:
    """The sample data as Excel would save it again: a BOM, CRLF line endings, every field quoted, columns reversed
    (`edit` may change a row first)."""
    dst.mkdir(parents=True)
    for f in src.glob("*.csv"):
        with open(f, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        rows = [list(reversed(r)) for r in rows]
        if edit:
            rows = edit(f.name, rows)
        with open(dst / f.name, "w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerows(
                [[v.replace("\n", "\r\n") for v in r] for r in rows])
    return dst


def test_a_resaved_data_folder_reuses_every_stage_and_a_changed_row_changes_the_keys(pipeline_seed, tmp_path):
    tmp = pipeline_seed.folder
    copy = _resave(SAMPLE, tmp_path / "resaved")
    assert (copy / "train.csv").read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in (copy / "dev.csv").read_bytes()
    r = run_in(tmp, "configs/default.yaml", "--data-dir", str(copy))
    assert r.returncode == 0, r.stderr[-2000:]
    assert run_dir_of(r.stdout) == pipeline_seed.run_dir  # the same rows: the same run id
    assert set(statuses(run_dir_of(r.stdout)).values()) == {"cached"}

    def one_summary(name, rows):  # the reversed header ends with fname: `summary` is the column before topic
        if name == "train.csv":
            col = rows[0].index("summary")
            rows[1][col] += " 끝."
        return rows

    from dialsum.config import load_config
    from dialsum.engine.run_folder import open_run
    from dialsum.stages.plan import Plan

    changed = _resave(SAMPLE, tmp_path / "changed", one_summary)
    keys = {}
    for name, folder in (("same", copy), ("changed", changed)):
        cfg = load_config(ROOT / "configs" / "default.yaml", {"output_dir": str(tmp_path / "runs")})
        keys[name] = {s.name: s.key for s in Plan.full(open_run(cfg, folder, lock=False)).stages}
    moved = {n for n in keys["same"] if keys["same"][n] != keys["changed"][n]}
    assert {"train:tiny", "train:tiny-chat", "train:tiny-bart"} <= moved and "submit" in moved


def _watch(proc, lines: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    t.start()
    return t


def _interrupt(cmd: list[str], sig: int, when, group: bool) -> tuple[int, list[str]]:
    """Start `cmd` in its own process group, wait until `when(stderr lines)` holds, send `sig` (to the whole group,
    as a terminal's Ctrl-C does, or to the process alone, as `kill` does)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    t = _watch(proc, lines)
    deadline = time.time() + 300
    while not when(lines) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "".join(lines)[-2000:]
    (os.killpg if group else os.kill)(proc.pid, sig)
    rc = proc.wait(timeout=120)
    t.join(timeout=10)
    return rc, lines


def test_ctrl_c_and_kill_stop_in_one_line_and_the_rerun_says_what_it_resumes(pipeline_seed, tmp_path):
    runs = tmp_path / "runs"
    seed_stages(pipeline_seed, runs, "build:tiny")
    cmd = [sys.executable, "-m", "dialsum", "run", "--only-model", "tiny", "--output-dir", str(runs),
           "--submissions-dir", str(tmp_path / "subs")]
    # a complete checkpoint (the Trainer writes trainer_state.json last): one the rerun can resume from
    ckpts = lambda: list((runs / "cache" / "train").glob("*/checkpoints/checkpoint-*/trainer_state.json"))  # noqa: E731
    rc, err = _interrupt(cmd, signal.SIGINT, lambda _: bool(ckpts()), group=True)
    text = "".join(err)
    assert rc == 130 and "Traceback" not in text, text[-3000:]
    assert [ln for ln in err if ln.strip()][-1].strip() == "dialsum: interrupted: resume with the same command"
    run_log = next(runs.glob("*/logs/run.log")).read_text(encoding="utf-8")
    assert "interrupted by SIGINT" in run_log

    rc, err = _interrupt(cmd, signal.SIGTERM, lambda lines: any("resuming from checkpoint-" in ln for ln in lines),
                         group=False)
    text = "".join(err)
    assert rc == 130 and "Traceback" not in text, text[-3000:]
    assert [ln for ln in err if ln.strip()][-1].strip() == "dialsum: interrupted: resume with the same command"
    assert "interrupted by SIGTERM" in next(runs.glob("*/logs/run.log")).read_text(encoding="utf-8")

    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"train tiny: resuming from checkpoint-\d+", r.stderr)


def test_ensemble_takes_a_run_folder_beside_outside_predictions(pipeline_seed, tmp_path):
    from dialsum.ensemble.baselines import lead_summary
    from dialsum.io.data import load_competition

    data = load_competition(SAMPLE)
    other = tmp_path / "api_system.csv"
    with open(other, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["fname", "summary"]] + [[d.fname, lead_summary(d.dialogue)]
                                                          for d in data.dev + data.test])
    out = tmp_path / "x.csv"
    r = run_cli("ensemble", "--candidates", str(pipeline_seed.run_dir), str(other), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    members = r.stdout.split("members (", 1)[1].splitlines()[0]
    assert members.startswith("10): ") and "api_system (72 dialogues)" in members and "tiny-bart/greedy" in members
    assert f"fitting on {pipeline_seed.run_dir / 'dev_select.csv'}" in r.stdout
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {x["fname"] for x in rows} == {d.fname for d in data.dev + data.test}
    assert {x["source"] for x in rows} <= set(members.replace("10): ", "").replace(" (72 dialogues)", "").split(", "))


def test_infer_tuning_says_no_when_the_tuned_config_submits_the_same(pipeline_seed, tmp_path):
    """A study whose only trial is the untuned choice (uniform weights, mean utility, no rules): whatever its trial
    score, the tuned YAML submits what the run submits, so the verdict is "no" and says why."""
    cfg_dir = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", cfg_dir)
    r = run_cli("tune", "--config", str(cfg_dir / "tune.yaml"), "--space", "infer", "--study", "same", "--trials", "2",
                "--run", str(pipeline_seed.run_dir), "--set", "infer.weights=[1.0]", "--set", "infer.utility=[mean]",
                "--set", "infer.postprocess=false", "--data-dir", str(SAMPLE))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "better than untuned: no (the tuned config submits exactly what the untuned one does)" in r.stdout
    summary = json.loads((cfg_dir.parent / "runs" / "tune" / "same" / "summary.json").read_text())
    assert summary["check"]["differs"] is False and summary["accepted"] is False
    tuned = (cfg_dir / "tuned" / "same.rejected.yaml").read_text()
    assert "submits exactly what the untuned one does" in tuned
    import yaml

    data_dir = (cfg_dir / "tuned" / yaml.safe_load(tuned.split("\n", 4)[-1])["data"]["dir"]).resolve()
    tuned_over = json.loads((pipeline_seed.run_dir / "manifest.json").read_text())["data_dir"]
    assert data_dir == Path(tuned_over).resolve()  # the data it tuned over, not the run config's data/sample


def test_smoke_mode_writes_a_smoke_submission_and_the_report_has_the_baselines(tmp_path):
    r = run_cli("run", "--config", str(write_config(tmp_path / "one.yaml", keep_models=["tiny-bart"])),
                "--limit", "8", "--output-dir", str(tmp_path / "runs"), "--submissions-dir", str(tmp_path / "subs"))
    assert r.returncode == 0, r.stderr[-3000:]
    [sub] = (tmp_path / "subs").glob("*.csv")
    assert sub.name.endswith("-smoke.csv") and f"submission: {sub}" in r.stdout
    with open(sub, encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == 1 + 8
    report = (run_dir_of(r.stdout) / "report.md").read_text(encoding="utf-8")
    assert "**Smoke run, not a real submission**" in report.split("| stage |")[0]
    assert "| baseline | constant summary fitted on train" in report and "| baseline | lead:" in report
    assert "Not above the best baseline" in report or "beat both baselines" in report
    split = json.loads((run_dir_of(r.stdout) / "dev_split.json").read_text())
    assert len(split["select"]) + len(split["report"]) == 8


def test_set_reaches_every_model_and_a_typo_names_the_flag_and_the_nearest_key():
    from dialsum.config import load_config

    cfg = load_config(ROOT / "configs" / "default.yaml", sets=["models.*.train.epochs=1"])
    assert [m.train.epochs for m in cfg.models] == [1, 1, 1]
    r = run_cli("run", "--set", "models.tiny.lora.rr=32")
    assert r.returncode == 2 and r.stderr.strip() == (
        "dialsum: error: --set models.tiny.lora.rr=32: models.tiny.lora.rr: unknown key 'rr' (did you mean 'r'?)")


def test_adding_a_decoding_generates_only_it(pipeline_seed, tmp_path):
    tmp = pipeline_seed.folder
    decodings = ("[{name: greedy, strategy: greedy}, {name: beam4, strategy: beam, num_beams: 4, n: 2, "
                 "length_penalty: 1.0}, {name: sample, strategy: sample, n: 4, temperature: 0.7, top_p: 0.9, seed: 1}, "
                 "{name: beam2, strategy: beam, num_beams: 2}]")
    r = run_in(tmp, "configs/default.yaml", "--set", f"models.tiny.decodings={decodings}",
               "--submissions-dir", str(tmp_path / "subs"))  # the seed folder's own submissions stay as they are
    assert r.returncode == 0, r.stderr[-2000:]
    man = json.loads((run_dir_of(r.stdout) / "manifest.json").read_text())
    gen = man["stages"]["generate:tiny"]
    assert gen["status"] == "ran" and gen["result"]["reused_decodings"] == ["greedy", "beam4", "sample"]
    assert "generate tiny: reusing decoding(s) greedy, beam4, sample" in r.stderr
    for name in ("greedy", "beam4", "sample"):  # byte-identical to the seed run's parts
        mine = Path(gen["dir"]) / "candidates" / f"tiny__{name}.csv"
        seed = Path(pipeline_seed.manifest["stages"]["generate:tiny"]["dir"]) / "candidates" / f"tiny__{name}.csv"
        assert mine.read_bytes() == seed.read_bytes()


def test_the_submission_log_records_uploads_and_says_how_dev_report_predicts_the_board(pipeline_seed, tmp_path,
                                                                                       monkeypatch):
    """`dialsum submitted` finds the file's run, logs its dev-report promise beside the leaderboard's answer (and
    shows it in the run's report.html); `dialsum submissions --json` lists them with the paired difference to the
    previous best and, from 3 uploads, the rank correlation; bad input is one line; a write killed before its rename
    leaves the old log."""
    runs, subs = tmp_path / "runs", tmp_path / "subs"
    seed_stages(pipeline_seed, runs, *[n for n in pipeline_seed.manifest["stages"] if n != "submit"])
    files = []
    for extra in ([], ["--set", "postprocess.tune_length_cap=false"], ["--set", "ensemble.utility=rouge1"]):
        r = run_cli("run", "--output-dir", str(runs), "--submissions-dir", str(subs), *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        files.append(Path(re.search(r"^submission: (.+)$", r.stdout, flags=re.M).group(1)))
    for f, public in zip(files, ("41.5", "40.25", "43")):
        r = run_cli("submitted", str(f), "--public", public, "--note", "try")
        assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("submissions", "--dir", str(subs), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    t = json.loads(r.stdout)
    entries = t["entries"]
    assert [e["file"] for e in entries] == [f.name for f in files]
    for e, f in zip(entries, files):
        assert {"file", "sha256", "run_id", "dev_report", "ci_low", "ci_high", "public"} <= set(e)
        import hashlib

        assert e["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest() and e["ci_low"] <= e["dev_report"] <= e["ci_high"]
    assert entries[0]["vs_previous_best"] is None and entries[1]["vs_previous_best"]["than"] == files[0].name
    assert t["dev_report_vs_public"]["n"] == 3 and -1 <= t["dev_report_vs_public"]["spearman"] <= 1
    html = (runs / entries[0]["run_id"] / "report.html").read_text(encoding="utf-8")
    assert "41.5" in html and "Leaderboard" in html
    for argv, needle in ((["submitted", str(files[0]), "--public", "101"], "must be between 0 and 100"),
                         (["submitted", str(SAMPLE / "test.csv"), "--public", "40", "--runs", str(runs)],
                          "not a submission dialsum wrote")):
        r = run_cli(*argv)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

    from dialsum.io import submission_log

    log = subs / "log.csv"
    before = log.read_bytes()

    def killed(*a, **k):
        raise KeyboardInterrupt  # what a kill between the write and the rename leaves

    monkeypatch.setattr(os, "replace", killed)
    try:
        submission_log.append_entry(log, {"file": "x.csv", "public": 1})
    except KeyboardInterrupt:
        pass
    assert log.read_bytes() == before and len(submission_log.read_log(log)) == 3
    assert [p.name for p in subs.iterdir() if p.name.startswith(".")] == []
