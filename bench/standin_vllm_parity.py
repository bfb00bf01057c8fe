"""vLLM vs transformers on every decoder checkpoint's stand-in (../shared/checkpoints): same prompts, same stop set,
greedy and beam outputs compared token for token after decoding. Too slow for the test suite (one vLLM engine per
architecture, ~20-50 s each on CPU); the suite runs one of them (tests/test_real_checkpoints.py).

    .venv/bin/python bench/standin_vllm_parity.py              # all 9 decoder checkpoints, ~6 min on 2 cores
    .venv/bin/python bench/standin_vllm_parity.py solar-10.7b   # some of them

Each stand-in is served the way a real checkpoint is: its vocabulary lacks the competition's tags, so vLLM gets the
merged checkpoint dialsum writes (with the trained end token as its tokenizer's EOS). Prints one line per checkpoint
and decoding (EQUAL / DIFF) and the stop ids each engine uses.
"""
from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DECODERS = {
    "solar-10.7b": "upstage__SOLAR-10.7B-Instruct-v1.0", "bllossom-8b": "MLP-KTLim__llama-3-Korean-Bllossom-8B",
    "qwen2.5-7b": "Qwen__Qwen2.5-7B-Instruct", "exaone-4.0-1.2b": "LGAI-EXAONE__EXAONE-4.0-1.2B",
    "llama-3-open-ko-8b": "beomi__Llama-3-Open-Ko-8B", "kanana-1.5-8b": "kakaocorp__kanana-1.5-8b-instruct-2505",
    "polyglot-ko-5.8b": "EleutherAI__polyglot-ko-5.8b", "kogpt": "kakaobrain__kogpt__KoGPT6B-ryan1.5b-float16",
    "llama-2-ko-7b": "beomi__llama-2-ko-7b",
}


def one(name: str, work: Path) -> list[str]:
    from dialsum.config import DecodingSpec, GenerateSpec, load_model_config
    from dialsum.io.data import load_competition
    from dialsum.models.generation import HFEngine
    from dialsum.models.standins import build_standin
    from dialsum.models.encoding import encode_input
    from dialsum.models.vllm_backend import VLLMEngine

    data = load_competition(ROOT / "data" / "sample")
    texts = [d.dialogue for d in data.train] + [d.summary for d in data.train]
    path = build_standin(ROOT.parent / "shared" / "checkpoints" / DECODERS[name], work / name / "model", texts)
    cfg = load_model_config(ROOT / "configs" / "models" / f"{name}.yaml")
    cfg = cfg.model_copy(update={"path": str(path), "precision": "fp32", "max_input_tokens": 384,
                                 "max_new_tokens": 16, "expect": {}})
    t0 = time.time()
    v = VLLMEngine(cfg, cfg.path, None, GenerateSpec(enforce_eager=True), work / name)
    hf = HFEngine(cfg, cfg.path, None, 4)
    prompts = [encode_input(hf.tokenizer, d.dialogue, cfg) for d in data.dev[:4]]
    lines = []
    try:
        for spec in (DecodingSpec(name="greedy"), DecodingSpec(name="beam2", strategy="beam", num_beams=2, n=1)):
            a = [x[0][0] for x in v.run(prompts, spec, None)]
            b = [x[0][0] for x in hf.run(prompts, spec, None)]
            lines.append(f"{name:<20} {spec.name:<7} {'EQUAL' if a == b else 'DIFF'} ({sum(x == y for x, y in zip(a, b))}"
                         f"/{len(a)} prompts)")
        lines.append(f"{name:<20} stops   vLLM {v.stops} transformers {hf.stops}; {time.time() - t0:.0f} s")
    finally:
        v.close()
    return lines


def main() -> int:
    names = sys.argv[1:] or list(DECODERS)
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        for name in names:
            for line in one(name, Path(tmp)):
                print(line, flush=True)
    for p in multiprocessing.active_children():
        p.join(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
