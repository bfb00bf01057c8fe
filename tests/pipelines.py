"""Helpers for tests that drive `dialsum run` through the CLI: run configs with absolute paths, reading a run folder
back, and seeding a fresh output folder with stage folders the session's seed run already computed."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from conftest import ROOT, SAMPLE, run_cli


def write_config(path: Path, edit=None, keep_models: list[str] | None = None) -> Path:
    """configs/default.yaml with absolute paths, optionally edited (a dict -> dict function)."""
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))
    models_dir = ROOT / "configs"
    raw["models"] = [{"base": str(models_dir / m)} if isinstance(m, str) else {**m, "base": str(models_dir / m["base"])}
                     for m in raw["models"]]
    if keep_models:
        name = lambda m: m.get("name") or yaml.safe_load(Path(m["base"]).read_text(encoding="utf-8"))["name"]  # noqa: E731
        raw["models"] = [m for m in raw["models"] if name(m) in keep_models]
    raw["data"]["dir"] = str(SAMPLE)
    raw.pop("output_dir")
    raw.pop("submissions_dir")
    if edit:
        raw = edit(raw)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run_in(tmp: Path, config: str | Path, *extra: str, env: dict | None = None):
    return run_cli("run", "--config", str(config), "--output-dir", str(tmp / "runs"),
                   "--submissions-dir", str(tmp / "subs"), *extra, env=env)


def statuses(run_dir: Path) -> dict[str, str]:
    man = json.loads((run_dir / "manifest.json").read_text())
    return {k: v["status"] for k, v in man["stages"].items()}


def run_dir_of(stdout: str) -> Path:
    return Path(re.search(r"^run: (.+)$", stdout, flags=re.M).group(1))


def submission_of(stdout: str) -> Path:
    return Path(re.search(r"^submission: (.+)$", stdout, flags=re.M).group(1))


def seed_stages(seed, runs: Path, *names: str) -> None:
    """Copy the seed run's stage folders named like its manifest ("build:tiny", "train:tiny-bart", ...) into
    `runs/cache`: the same keys, so a run in `runs` finds those stages done and computes only the rest. Stage folders
    are written once and never changed, so copying them while other tests use the seed's folder is safe."""
    stages = seed.manifest["stages"]
    for name in names:
        src = Path(stages[name]["dir"])
        dst = runs / "cache" / src.parent.name / src.name
        if not dst.exists():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
