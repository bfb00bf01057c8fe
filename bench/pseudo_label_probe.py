"""Pseudo-labels measured honestly on dev-report, without the test refit: runs a config's stages up to the
`refit-probe`/`generate-probe` ones (each model retrained on train + dev-report's dialogues with the ensemble's picks
as targets, never their references) and prints the final stage's comparison: dev-report with vs without, paired.

    .venv/bin/python bench/pseudo_label_probe.py --data-dir DIR [--config configs/default.yaml] [--output-dir runs]

The numbers are the ones `dialsum run --final --set final.pseudo_label=true` puts in its report (same stages, keys).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    from dialsum.config import MetricSpec, load_config
    from dialsum.engine.run_folder import open_run
    from dialsum.stages.common import load_data
    from dialsum.stages.final import probe_result
    from dialsum.stages.pipeline import engine_for
    from dialsum.stages.plan import Plan

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--output-dir", default=str(ROOT / "runs"))
    args = ap.parse_args()
    cfg = load_config(Path(args.config), {"output_dir": str(Path(args.output_dir).resolve()),
                                          "final": {"refit": True, "pseudo_label": True}})
    start = time.time()
    ctx = open_run(cfg, Path(args.data_dir))
    eng = engine_for(ctx)
    plan = Plan.full(ctx)
    fin = next(s for s in plan.stages if s.kind == "final")
    needed = [s for s in plan.stages if s.name.startswith("generate-probe:")]
    for s in plan.stages:  # everything the probes need, in order; not the test refit
        if any(s in plan.closure(p) for p in needed) or s.name == "postprocess":
            eng.run(s)
    res = probe_result(fin.inputs, fin.context, load_data(fin.context), MetricSpec(**fin.inputs["metric"]))
    print(json.dumps({"run_id": ctx.run_id, "seconds": round(time.time() - start), **res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
