"""vLLM engine start-up and first generation, with dialsum's compiled-kernel cache against a folder per engine.

Each engine start is a fresh process (as each generate stage is): start `VLLMEngine` on a tiny Llama with a LoRA-free
greedy decode of 8 dev prompts, close it. vLLM (and torch-inductor, which it uses for a few kernels even with
enforce_eager on CPU) compiles on first use; where the compiled code lives decides whether the next stage pays again.

  * per engine (the baseline, and dialsum before this cache): `DIALSUM_CACHE_DIR=off`, every engine compiles into its
    own work folder, as every generate stage did;
  * shared, cold: a fresh `DIALSUM_CACHE_DIR` (the first generate stage on a machine);
  * shared, warm: the same `DIALSUM_CACHE_DIR` again (every later generate stage);
  * shared, warm, with vLLM's engine core in its own spawned process (`VLLM_ENABLE_V1_MULTIPROCESSING=1`, vLLM's
    default and dialsum's before it ran the core in the stage's process on machines without a GPU).

Run: .venv/bin/python bench/bench_vllm_start.py [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(model: str, work: str) -> None:
    """One engine start in this process: prints {"init_s", "first_s", "second_s"}."""
    from dialsum.config import DecodingSpec, GenerateSpec, load_model_config
    from dialsum.io.data import load_competition
    from dialsum.models.encoding import encode_input
    from dialsum.models.vllm_backend import VLLMEngine

    cfg = load_model_config(ROOT / "configs" / "models" / "tiny.yaml").model_copy(update={"path": model, "tiny": None})
    rows = load_competition(ROOT / "data" / "sample").dev[:8]
    t0 = time.perf_counter()
    engine = VLLMEngine(cfg, model, None, GenerateSpec(), Path(work))
    t1 = time.perf_counter()
    prompts = [encode_input(engine.tokenizer, d.dialogue, cfg) for d in rows]
    engine.run(prompts, DecodingSpec(name="greedy"), None)
    t2 = time.perf_counter()
    engine.run(prompts, DecodingSpec(name="greedy"), None)
    t3 = time.perf_counter()
    engine.close()
    print(json.dumps({"init_s": round(t1 - t0, 1), "first_s": round(t2 - t1, 1), "second_s": round(t3 - t2, 1)}))


def start(model: Path, cache: str, **extra: str) -> dict:
    env = {**os.environ, "DIALSUM_CACHE_DIR": cache, "PYTHONPATH": str(ROOT / "src"), **extra}
    with tempfile.TemporaryDirectory(prefix="vllm-work-") as work:
        r = subprocess.run([sys.executable, __file__, "--child", str(model), work], env=env, capture_output=True,
                           text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from dialsum.config import TinyModelSpec
    from dialsum.io.data import load_competition
    from dialsum.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        model = build_tiny_model(Path(tmp) / "model", load_competition(ROOT / "data" / "sample").train,
                                 TinyModelSpec(pretrain_steps=10))
        for _ in range(args.repeats):
            shared = tempfile.mkdtemp(prefix="dc-", dir=tmp)
            rows = [("per engine (DIALSUM_CACHE_DIR=off)", start(model, "off")),
                    ("shared cache, cold", start(model, shared)),
                    ("shared cache, warm", start(model, shared)),
                    ("engine core spawned (VLLM_ENABLE_V1_MULTIPROCESSING=1), shared cache, first start",
                     start(model, shared, VLLM_ENABLE_V1_MULTIPROCESSING="1")),
                    ("engine core spawned, shared cache, warm",
                     start(model, shared, VLLM_ENABLE_V1_MULTIPROCESSING="1"))]
            print("| setting | engine start s | first generation s | second generation s |")
            print("|---|---:|---:|---:|")
            for name, r in rows:
                print(f"| {name} | {r['init_s']} | {r['first_s']} | {r['second_s']} |")


if __name__ == "__main__":
    main()
