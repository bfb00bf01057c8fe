"""vLLM (CPU build) for real: greedy equals transformers greedy token for token, with and without a LoRA adapter;
`n` samples and beam widths give the right counts; the same seed gives the same candidates. Never skipped."""
from __future__ import annotations

import pytest

from dialsum.config import DecodingSpec, GenerateSpec, MetricSpec
from dialsum.prompts import encode_prompt
from dialsum.train import style_of, train_model


@pytest.fixture(scope="module")
def adapter(tiny_cfg, sample_data, tmp_path_factory):
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(
        update={"max_steps": 10, "eval_steps": 10, "eval_subset": 2, "early_stopping_patience": None})})
    return train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path_factory.mktemp("ad"), MetricSpec()).adapter_dir


@pytest.fixture(scope="module")
def engines(tiny_cfg, adapter, tmp_path_factory):
    from dialsum.generate import HFEngine
    from dialsum.vllm_backend import VLLMEngine

    cfg = tiny_cfg.model_copy(update={"max_new_tokens": 32})
    work = tmp_path_factory.mktemp("vllm")
    v = VLLMEngine(cfg, cfg.path, adapter, GenerateSpec(), work)
    return cfg, v, HFEngine(cfg, cfg.path, adapter, 8), HFEngine(cfg, cfg.path, None, 8)


def _prompts(cfg, tok, rows):
    return [encode_prompt(tok, d.dialogue, style_of(cfg), cfg.max_input_tokens) for d in rows]


def test_vllm_greedy_equals_hf_greedy_with_and_without_lora(engines, sample_data):
    cfg, v, hf_lora, hf_base = engines
    prompts = _prompts(cfg, v.tokenizer, sample_data.dev[:8])
    g = DecodingSpec(name="greedy")
    with_lora = v.run(prompts, g, None)
    assert [x[0][0] for x in with_lora] == [x[0][0] for x in hf_lora.run(prompts, g, None)]
    lora, v.lora = v.lora, None
    try:
        base = v.run(prompts, g, None)
    finally:
        v.lora = lora
    assert [x[0][0] for x in base] == [x[0][0] for x in hf_base.run(prompts, g, None)]
    assert [x[0][0] for x in base] != [x[0][0] for x in with_lora]  # the adapter really is applied


def test_counts_and_seeded_reproducibility(engines, sample_data):
    cfg, v, _, _ = engines
    prompts = _prompts(cfg, v.tokenizer, sample_data.dev[:3])
    beams = v.run(prompts, DecodingSpec(name="b", strategy="beam", num_beams=3, n=2), None)
    assert [len(x) for x in beams] == [2, 2, 2]
    s = DecodingSpec(name="s", strategy="sample", n=4, temperature=0.9, seed=11)
    a, b = v.run(prompts, s, None), v.run(prompts, s, None)
    assert [len(x) for x in a] == [4, 4, 4]
    assert [[t for t, _ in x] for x in a] == [[t for t, _ in x] for x in b]


def test_generate_stage_with_vllm_backend_covers_every_fname(engines, sample_data, tmp_path, monkeypatch, adapter):
    from dialsum import generate as gen_mod
    from dialsum.candidates import read_part
    from dialsum.generate import generate_candidates

    cfg, v, _, _ = engines
    monkeypatch.setattr(gen_mod, "make_engine", lambda *a, **k: _Borrowed(v))  # reuse the started engine
    cfg2 = cfg.model_copy(update={"decodings": [DecodingSpec(name="greedy")]})
    rows = {"dev": sample_data.dev, "test": sample_data.test}
    (path,) = generate_candidates(cfg2, cfg.path, adapter, rows, tmp_path, GenerateSpec(backend="vllm"))
    got = read_part(path)
    assert {(c.split, c.fname) for c in got} == {(s, d.fname) for s, r in rows.items() for d in r}


class _Borrowed:
    def __init__(self, engine):
        self.engine, self.tokenizer = engine, engine.tokenizer

    def run(self, *a):
        return self.engine.run(*a)

    def close(self):
        pass
