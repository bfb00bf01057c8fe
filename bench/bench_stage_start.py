"""Stage children forked from the pre-imported fork server against a fresh interpreter per stage.

`dialsum run --config configs/default.yaml` (the embedded default `bash run_all.sh` runs: 3 models, 8 stage
children) from an empty output folder, once with every child a fresh `python -m dialsum.engine.worker`
(`DIALSUM_STAGE_START=exec`, the baseline and dialsum before the fork server) and once forked (the default on a
machine without GPUs). Same command, same cores (OMP_NUM_THREADS as set by the caller), a warm morpheme cache and
bytecode for both; the submission bytes must be equal.

Run: .venv/bin/python bench/bench_stage_start.py [--repeats 1]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(mode: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix=f"stage-start-{mode}-") as tmp:
        env = {**os.environ, "DIALSUM_STAGE_START": mode, "PYTHONPATH": str(ROOT / "src")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dialsum", "run", "--config", str(ROOT / "configs" / "default.yaml"),
                        "--output-dir", f"{tmp}/runs", "--submissions-dir", f"{tmp}/subs", "--quiet"],
                       env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        (sub,) = Path(tmp, "subs").glob("*.csv")
        return seconds, hashlib.sha256(sub.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"exec": [], "fork": []}
    digests = set()
    for _ in range(args.repeats):
        for mode in ("exec", "fork"):
            seconds, digest = one_run(mode)
            times[mode].append(seconds)
            digests.add(digest)
            print(f"{mode}: {seconds:.1f} s  submission sha256 {digest[:16]}", flush=True)
    assert len(digests) == 1, f"the two start methods gave different submissions: {digests}"
    best = {m: min(v) for m, v in times.items()}
    print(f"best of {args.repeats}: exec {best['exec']:.1f} s, fork {best['fork']:.1f} s "
          f"({best['exec'] / best['fork']:.2f}x); submissions byte-identical")


if __name__ == "__main__":
    main()
