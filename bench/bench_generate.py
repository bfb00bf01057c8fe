"""Candidates/s of the two generation backends on CPU, for the tiny model and a ~25M-parameter Llama.

Both backends get the same 48 prompts (sample dev + test, instruction format) and the same decoding specs;
engine start-up is timed separately. Models are built locally (the 25M one randomly initialised, so it rarely stops
before max_new_tokens: it measures the decode loop at full length).
Run: .venv/bin/python bench/bench_generate.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

def bench_backend(name, make, prompts, specs):
    t0 = time.perf_counter()
    engine = make()
    start = time.perf_counter() - t0
    rows = []
    for spec in specs:
        engine.run(prompts[:2], spec, None)  # warm-up (first beam/sampling call compiles paths)
        t0 = time.perf_counter()
        out = engine.run(prompts, spec, None)
        dt = time.perf_counter() - t0
        n = sum(len(o) for o in out)
        rows.append((name, spec.name, n, dt, n / dt))
    engine.close()
    return start, rows


def main():
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the table readable
    from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig, TinyModelSpec
    from dialsum.io.data import load_competition
    from transformers import AutoModelForCausalLM

    from dialsum.models.generation import HFEngine
    from dialsum.models.loading import load_tokenizer
    from dialsum.models.prompts import encode_prompt
    from dialsum.models.tiny import build_tiny_model
    from dialsum.models.encoding import style_of
    from dialsum.models.vllm_backend import VLLMEngine

    root = Path(__file__).resolve().parents[1]
    data = load_competition(root / "data" / "sample")
    specs = [DecodingSpec(name="greedy"), DecodingSpec(name="sample4", strategy="sample", n=4, temperature=0.8, seed=1),
             DecodingSpec(name="beam4", strategy="beam", num_beams=4, n=1)]
    work = Path(tempfile.mkdtemp(prefix="bgen", dir="/tmp"))
    models = {
        "tiny (0.5M)": TinyModelSpec(pretrain_steps=150),
        "25M": TinyModelSpec(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                             num_key_value_heads=8, pretrain_steps=0),
    }
    print("| model | backend | decoding | candidates | seconds | candidates/s | engine start (s) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, spec in models.items():
        path = build_tiny_model(work / label.split()[0], data.train, spec)
        cfg = ModelConfig(name="bench", path=str(path), target_modules=["q_proj"], max_input_tokens=384,
                          max_new_tokens=64, quantization="none", precision="fp32")
        tokenizer = load_tokenizer(str(path), cfg)
        nparams = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
        prompts = [encode_prompt(tokenizer, d.dialogue, style_of(cfg), 384) for d in data.dev + data.test]
        for backend, make in (("hf", lambda: HFEngine(cfg, str(path), None, 16)),
                              ("vllm", lambda: VLLMEngine(cfg, str(path), None, GenerateSpec(), work))):
            start, rows = bench_backend(backend, make, prompts, specs)
            for b, dec, n, dt, rate in rows:
                print(f"| {label}: {nparams / 1e6:.2f}M | {b} | {dec} | {n} | {dt:.2f} | {rate:.1f} | {start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
