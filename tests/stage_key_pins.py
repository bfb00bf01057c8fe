"""Today's stage keys for the shipped run configs, written once and checked in (tests/data/stage_keys.json): a
refactor that changes a key would silently recompute (hours on a GPU) what users have cached.

    python tests/stage_key_pins.py --write      # only when a key is meant to change (bump the stage's version)
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "tests" / "data" / "stage_keys.json"
CONFIGS = ("default", "align", "competition")
SUBMISSIONS = "/pinned/submissions"  # the submit stage keys its (absolute) folder


def current_keys(config: str, hub_cache: Path) -> dict[str, str]:
    """Every stage of the config's full plan, and a devscore stage per model, with its key (hub ids unresolved)."""
    os.environ["HF_HUB_CACHE"] = str(hub_cache)
    from dialsum.config import load_config
    from dialsum.engine.run_folder import open_run
    from dialsum.stages.plan import Plan
    from dialsum.stages import devscore

    cfg = load_config(ROOT / "configs" / f"{config}.yaml",
                      {"data": {"dir": str(ROOT / "data" / "sample")}, "submissions_dir": SUBMISSIONS,
                       "generate": {"backend": "hf"}})
    ctx = open_run(cfg, lock=False)
    keys = {s.name: s.key for s in Plan.full(ctx).stages}
    rows = list(ctx.split.select[:3])
    keys |= {f"devscore:{m.name}": devscore.plan(ctx, m, rows, "pin").key for m in cfg.models}
    return keys


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as hub:
        pins = {c: current_keys(c, Path(hub)) for c in CONFIGS}
    if "--write" in sys.argv:
        PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(json.dumps(pins, indent=1, sort_keys=True))
