"""`dialsum tune` for real on CPU with the tiny model: journal storage shared by 2 worker processes, resume adds
trials, a failing trial does not stop the study, a hopeless trial is pruned, the tuned YAML runs, the infer space."""
from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import run_cli
from pipelines import seed_stages, write_config


def tune_yaml(tmp: Path, name: str, seed=None, **extra) -> Path:
    # the tuned model alone: the tuned YAML's `dialsum run` and the infer space need no other model's training.
    # With `seed` (conftest.pipeline_seed) the study's cache starts with the untuned model trained: the held-out
    # check's untuned side is then a cache hit, as on a user's machine where the plain config ran first
    if seed is not None:
        seed_stages(seed, tmp / "runs", "build:tiny", "train:tiny")
    run_cfg = write_config(tmp / "run.yaml", lambda c: {**c, "output_dir": str(tmp / "runs"),
                                                        "submissions_dir": str(tmp / "subs")}, keep_models=["tiny"])
    raw = {"study": name, "run_config": str(run_cfg), "model": "tiny", "space": "train",
           "sampler": {"name": "tpe", "seed": 1},
           "train": {"lora_r": [8, 16], "learning_rate": [1e-3, 5e-3], "alpha_multiple": [2.0],
                     "dropout": [0.0, 0.05], "epochs": [1, 2]}, **extra}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def trials_of(tmp: Path, name: str):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp / "runs" / "tune" / name / "journal.log"
    assert journal.is_file()
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal)))).trials


@pytest.fixture(scope="module")
def study(tmp_path_factory, pipeline_seed):
    tmp = tmp_path_factory.mktemp("tune")
    cfg = tune_yaml(tmp, "lora", pipeline_seed, pruner={"name": "none"})
    r = run_cli("tune", "--config", str(cfg), "--trials", "2", "--workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, cfg, r


def test_two_workers_on_a_journal_write_the_tuned_yaml_and_plots(study):
    tmp, cfg, r = study
    trials = trials_of(tmp, "lora")
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(0 < t.value <= 100 for t in trials)
    summary = json.loads((tmp / "runs" / "tune" / "lora" / "summary.json").read_text())
    tuned = tmp / "tuned" / ("lora.yaml" if summary["accepted"] else "lora.rejected.yaml")
    assert sorted(p.name for p in (tmp / "tuned").glob("lora*.yaml")) == [tuned.name]  # one verdict, one file
    header = tuned.read_text().splitlines()[:4]
    assert any(h.startswith("# dev-report, tuned - untuned: ") for h in header)
    if summary["accepted"]:
        assert f"tuned config: {tuned}" in r.stdout
    else:
        assert any(h.startswith("# REJECTED") for h in header) and "not better than untuned" in r.stdout
    best = max(trials, key=lambda t: t.value)
    tiny = next(m for m in yaml.safe_load(tuned.read_text())["models"] if "name" not in m)
    assert tiny["lora"]["r"] == best.params["lora_r"]
    assert tiny["train"]["learning_rate"] == pytest.approx(best.params["learning_rate"])
    folder = tmp / "runs" / "tune" / "lora"
    for png in ("history.png", "slice.png"):
        assert (folder / png).stat().st_size > 2000
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["check"]["tuned"]["select"] == pytest.approx(best.value)
    assert set(summary["check"]["default"]) == {"select", "report"}
    paired = summary["check"]["paired"]  # tuned - default on the same dev-report dialogues
    assert paired["diff"] == pytest.approx(summary["check"]["tuned"]["report"] - summary["check"]["default"]["report"])
    assert paired["ci_low"] <= paired["diff"] <= paired["ci_high"] and 0 < paired["p_value"] <= 1
    assert summary["check"]["better"] == (paired["ci_low"] > 0)
    assert f"better than untuned: {'yes' if summary['check']['better'] else 'no'}" in r.stdout
    assert "| tuned (best trial) |" in (folder / "summary.md").read_text()
    # each trial ran its own training in a child process: one train log per trial folder
    assert len(list((folder / "trials").glob("*/logs/train-tiny.log"))) == 2
    # each trial is tracked (TensorBoard by default): its value and its dev-select curve
    assert len(list((folder / "trials").glob("*/tensorboard/dialsum/events.out.tfevents.*"))) == 2


def test_the_same_command_resumes_the_study_and_adds_trials(study):
    tmp, cfg, _ = study
    r = run_cli("tune", "--config", str(cfg), "--trials", "1", "--workers", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(trials_of(tmp, "lora")) == 3


@pytest.fixture(scope="module")
def tuned_run(study):
    tmp, _, _ = study
    (tuned,) = (tmp / "tuned").glob("lora*.yaml")  # accepted or rejected, it is a config `dialsum run` takes
    r = run_cli("run", "--config", str(tuned))
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


def test_the_tuned_yaml_runs_with_dialsum_run(tuned_run):
    tmp, r = tuned_run
    assert re.search(r"^submission: .+\.csv$", r.stdout, flags=re.M)
    man = json.loads((Path(re.search(r"^run: (.+)$", r.stdout, flags=re.M).group(1)) / "manifest.json").read_text())
    assert man["stages"]["train:tiny"]["status"] == "cached"  # the best trial's training, reused by key


def test_a_failing_trial_is_marked_fail_and_a_hopeless_one_is_pruned(tmp_path, pipeline_seed):
    """Enqueued trials: one whose training child is killed (it fails; the study goes on), then in one more command a
    good one and one with a garbage learning rate (inside the space, pruned at its first evaluation); an enqueued
    value outside the space is clipped to it, in one line."""
    good = {"lora_r": 16, "alpha_multiple": 2.0, "dropout": 0.0, "learning_rate": 3e-3, "epochs": 2}
    cfg = tune_yaml(tmp_path, "robust", pipeline_seed,
                    pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                    enqueue=[{**good, "epochs": 6}, {**good, "dropout": 0.05}, {**good, "learning_rate": 1.0}])
    cfg.write_text(cfg.read_text().replace("- 0.005", "- 1.0"))  # lr 1 inside the space: garbage, not clipped
    tune = ("tune", "--config", str(cfg), "--workers", "1", "--no-summary")
    r = run_cli(*tune, "--trials", "1", env={"DIALSUM_KILL_AFTER_STEPS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "enqueued trial 0: epochs 6 clipped to 2 (the space is [1, 2])" in r.stderr
    assert "no held-out check (--no-summary)" in r.stdout  # the check itself: the tests above
    assert not (tmp_path / "runs" / "tune" / "robust" / "summary.json").exists() and not (tmp_path / "tuned").exists()
    r = run_cli(*tune, "--trials", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    t = trials_of(tmp_path, "robust")
    assert [x.state for x in t] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.PRUNED]
    assert t[0].params["epochs"] == 2 and "killed by signal 9" in t[0].user_attrs["fail_reason"]
    assert t[2].intermediate_values and max(t[2].intermediate_values.values()) < t[1].value


def test_infer_space_on_a_finished_run_with_sqlite_storage(tuned_run, tmp_path):
    """Ensemble weights + post-processing over cached candidates: 120 trials, two workers on one SQLite file."""
    tmp, run = tuned_run
    run_dir = re.search(r"^run: (.+)$", run.stdout, flags=re.M).group(1)
    cfg = tune_yaml(tmp_path, "infer", space="infer")
    db = f"sqlite:///{tmp_path / 'study.db'}"
    r = run_cli("tune", "--config", str(cfg), "--trials", "120", "--workers", "2", "--storage", db, "--run", run_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="infer", storage=db)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 120
    s = json.loads((tmp_path / "runs" / "tune" / "infer" / "summary.json").read_text())  # the tune YAML's runs/
    assert set(s["check"]) == {"tuned", "default", "best_single", "paired", "paired_best_single", "better", "differs"}
    assert s["check"]["paired_best_single"]["diff"] == pytest.approx(
        s["check"]["tuned"]["report"] - s["check"]["best_single"]["report"])
    # judged as submitted: the tuned YAML's run against the run's own final, and only when they differ
    assert s["check"]["paired"]["diff"] == pytest.approx(s["check"]["tuned"]["report"] - s["check"]["default"]["report"])
    assert s["check"]["better"] == (s["check"]["differs"] and s["check"]["paired"]["ci_low"] > 0)
    assert s["check"]["tuned"]["select"] == pytest.approx(study.best_value)
    (path,) = (tmp_path / "tuned").glob("infer*.yaml")
    assert path.name == ("infer.yaml" if s["accepted"] else "infer.rejected.yaml")
    tuned = yaml.safe_load(path.read_text())
    assert set(tuned["ensemble"]["weights"]) == {k[2:] for k in study.best_params if k.startswith("w:")}
    # the tuned weights and rules stay under the guards: k-fold + one-SE for the ensemble, ablation for the rules
    assert tuned["ensemble"]["guard"] is True and "fit" not in tuned["ensemble"]
    assert tuned.get("postprocess", {"ablate": True})["ablate"] is True
    r = run_cli("tune", "--config", str(cfg), "--trials", "1", "--storage", "nonsense", "--run", run_dir)
    assert r.returncode == 2 and "--storage 'nonsense'" in r.stderr and "Traceback" not in r.stderr


def test_a_resumed_study_reseeds_so_no_parameter_set_repeats(tuned_run, tmp_path):
    """The random sampler, resumed twice with the same seed in the YAML: 10 trials, 10 distinct parameter sets
    (without reseeding, the second command would replay the first one's five)."""
    tmp, run = tuned_run
    run_dir = re.search(r"^run: (.+)$", run.stdout, flags=re.M).group(1)
    cfg = tune_yaml(tmp_path, "again", space="infer", sampler={"name": "random", "seed": 3})
    for _ in range(2):
        r = run_cli("tune", "--config", str(cfg), "--trials", "5", "--run", run_dir)
        assert r.returncode == 0, r.stderr[-3000:]
    params = [tuple(sorted(t.params.items())) for t in trials_of(tmp_path, "again")]
    assert len(params) == 10 and len(set(params)) == 10


def _workers_of(study_name: str) -> dict[int, int]:
    """worker index -> pid of the `dialsum tune --worker i` processes of this study (read from /proc)."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            args = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "tune" in args and "--worker" in args and study_name in args:
            out[int(args[args.index("--worker") + 1])] = int(p.name)
    return out


def test_postgresql_study_survives_a_killed_worker_and_resumes(tmp_path, pipeline_seed):
    """A real PostgreSQL server (pgserver, started and stopped here), README's several-machines recipe: two workers
    share the study (`--no-summary`, as on machines that only add trials), one is killed with SIGKILL mid-trial; the
    other's heartbeat check marks that trial failed and runs its retry; the same command on the same storage then
    resumes the study, and `--trials 0` alone checks and summarises it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    try:
        import pgserver
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("pgserver is not installed (requirements-dev.txt)")
    server = pgserver.get_server(str(tmp_path / "pg"), cleanup_mode="stop")
    try:
        url = server.get_uri()
        cfg = tune_yaml(tmp_path, "pg", pipeline_seed, pruner={"name": "none"}, heartbeat={"interval": 1, "grace": 3},
                        train={"lora_r": [8], "learning_rate": [1e-3, 5e-3], "alpha_multiple": [2.0],
                               "dropout": [0.0, 0.05], "epochs": [1, 1]})
        from conftest import ROOT

        parent = subprocess.Popen([sys.executable, "-m", "dialsum", "tune", "--config", str(cfg), "--trials", "3",
                                   "--workers", "2", "--storage", url, "--no-summary"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT)
        killed = None
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and parent.poll() is None:
            try:
                running = [t for t in optuna.load_study(study_name="pg", storage=url).trials
                           if t.state == optuna.trial.TrialState.RUNNING]
            except KeyError:  # the study is not created yet
                running = []
            workers = _workers_of("pg")
            if len(running) == 2 and 1 in workers:
                os.kill(workers[1], signal.SIGKILL)  # worker 1 dies mid-trial, as on a lost machine
                killed = workers[1]
            time.sleep(0.2)
        out, err = parent.communicate(timeout=900)
        assert killed is not None, err[-3000:]
        assert parent.returncode == 0, err[-3000:]
        assert "worker exit codes [0, -9]" in err
        trials = optuna.load_study(study_name="pg", storage=url).trials
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        assert len(failed) == 1, [(t.number, t.state) for t in trials]
        retries = [t for t in trials
                   if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == failed[0].number]
        assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
        # the same parameters, run again: every value the killed trial had drawn (a kill while it was still drawing
        # leaves fewer; the retry draws the rest)
        assert {k: retries[0].params[k] for k in failed[0].params} == failed[0].params
        assert set(retries[0].params) == {"lora_r", "learning_rate", "alpha_multiple", "dropout", "epochs"}
        assert f"--trials 0 --storage {url}` checks and summarises" in out
        r = run_cli("tune", "--config", str(cfg), "--trials", "1", "--workers", "1", "--storage", url, "--no-summary")
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(optuna.load_study(study_name="pg", storage=url).trials) == len(trials) + 1
        summary = tmp_path / "runs" / "tune" / "pg" / "summary.json"
        assert not summary.exists()
        r = run_cli("tune", "--config", str(cfg), "--trials", "0", "--storage", url)
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(optuna.load_study(study_name="pg", storage=url).trials) == len(trials) + 1  # none added
        s = json.loads(summary.read_text())
        assert s["trials"]["COMPLETE"] == 3 and s["trials"]["FAIL"] == 1 and set(s["check"]) >= {"tuned", "default"}
        assert "better than untuned: " in r.stdout
        r = run_cli("tune", "--config", str(cfg), "--trials", "0", "--no-summary", "--storage", url)
        assert r.returncode == 2 and "nothing to do" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        server.cleanup()
