"""vLLM (CPU build) for real, serving a LoRA adapter by LoRARequest: greedy equals transformers greedy token for
token, with and without the adapter; `n` samples and beam widths give the right counts; the same seed gives the same
candidates. Never skipped.

vLLM serves an adapter this way only on a base whose vocabulary already holds the competition's tags (the adapter
then trains no token rows), so this module's tiny model is pre-tagged; real checkpoints are tag-less and take the
merged path, tested in test_vllm_tagless.py."""
from __future__ import annotations

import multiprocessing

import pytest

from dialsum.config import DecodingSpec, GenerateSpec, MetricSpec
from dialsum.models.prompts import encode_prompt
from dialsum.models.encoding import style_of
from dialsum.models.training import train_model


@pytest.fixture(scope="module")
def adapter(pretagged_tiny_cfg, sample_data, tmp_path_factory):
    tiny_cfg = pretagged_tiny_cfg
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(
        update={"max_steps": 10, "eval_steps": 10, "eval_subset": 2, "early_stopping_patience": None})})
    return train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path_factory.mktemp("ad"), MetricSpec()).weights_dir


def chat_model_with_its_own_end_token(tiny_cfg, dst, rows):
    """A chat-format copy of the tiny model whose generation_config names a second end token (as chat checkpoints
    name their end-of-turn token): one the model emits mid-summary, so stopping on it visibly changes the output."""
    import shutil
    from collections import Counter

    from transformers import GenerationConfig

    from dialsum.models.generation import HFEngine

    shutil.copytree(tiny_cfg.path, dst)
    cfg = tiny_cfg.model_copy(update={"path": str(dst), "prompt_format": "chat", "max_new_tokens": 32})
    hf = HFEngine(cfg, str(dst), None, 8)
    prompts = _prompts(cfg, hf.tokenizer, rows)
    plain = [x[0][0] for x in hf.run(prompts, DecodingSpec(name="greedy"), None)]
    ids = Counter(t for text in plain for t in hf.tokenizer(text, add_special_tokens=False)["input_ids"][1:])
    end = ids.most_common(1)[0][0]
    gc = GenerationConfig.from_pretrained(dst)
    gc.eos_token_id = [hf.tokenizer.eos_token_id, end]
    gc.save_pretrained(dst)
    return cfg, plain


@pytest.fixture(scope="module")
def engines(pretagged_tiny_cfg, adapter, sample_data, tmp_path_factory):
    from dialsum.models.generation import HFEngine, make_engine
    from dialsum.models.vllm_backend import VLLMEngine

    work = tmp_path_factory.mktemp("vllm")
    cfg, plain = chat_model_with_its_own_end_token(pretagged_tiny_cfg, work / "chat-model", sample_data.dev[:8])
    v = make_engine("vllm", cfg, cfg.path, adapter, GenerateSpec(backend="vllm"), work)  # the stage's own selection
    assert isinstance(v, VLLMEngine)
    v.plain_base_outputs = plain  # the base's greedy output before the second end token was configured
    yield cfg, v, HFEngine(cfg, cfg.path, adapter, 8), HFEngine(cfg, cfg.path, None, 8)
    v.close()
    for p in multiprocessing.active_children():
        p.join(30)  # shutdown is asynchronous
    assert not [p for p in multiprocessing.active_children() if "EngineCore" in p.name]  # nothing left running


def _prompts(cfg, tok, rows):
    return [encode_prompt(tok, d.dialogue, style_of(cfg), cfg.max_input_tokens) for d in rows]


def test_vllm_greedy_equals_hf_greedy_with_and_without_lora_on_a_pretagged_base(engines, sample_data):
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


def test_hf_and_vllm_stop_at_the_same_place_on_a_chat_models_own_end_token(engines, sample_data):
    """transformers must stop on every end token the model's generation_config names (not only the tokenizer's EOS),
    as vLLM does; the end token itself is not part of the summary in either."""
    cfg, v, _, hf_base = engines
    prompts = _prompts(cfg, v.tokenizer, sample_data.dev[:8])
    g = DecodingSpec(name="greedy")
    lora, v.lora = v.lora, None
    try:
        vl = [x[0][0] for x in v.run(prompts, g, None)]
    finally:
        v.lora = lora
    hf = [x[0][0] for x in hf_base.run(prompts, g, None)]
    assert hf == vl
    shorter = [a for a, b in zip(hf, v.plain_base_outputs) if len(a) < len(b)]
    assert len(shorter) >= 4  # the configured end token really cut most outputs short
    assert all(b.startswith(a) for a, b in zip(hf, v.plain_base_outputs))


def test_counts_and_seeded_reproducibility(engines, sample_data):
    cfg, v, _, _ = engines
    prompts = _prompts(cfg, v.tokenizer, sample_data.dev[:3])
    beams = v.run(prompts, DecodingSpec(name="b", strategy="beam", num_beams=3, n=2), None)
    assert [len(x) for x in beams] == [2, 2, 2]
    s = DecodingSpec(name="s", strategy="sample", n=4, temperature=0.9, seed=11)
    a, b = v.run(prompts, s, None), v.run(prompts, s, None)
    assert [len(x) for x in a] == [4, 4, 4]
    assert [[t for t, _ in x] for x in a] == [[t for t, _ in x] for x in b]
    assert sum(len({t for t, _ in x}) > 1 for x in a) >= 2  # four draws per prompt, not four copies of one
    other = v.run(prompts, s.model_copy(update={"seed": 12}), None)
    assert [[t for t, _ in x] for x in other] != [[t for t, _ in x] for x in a]  # another seed draws others


def test_generate_stage_with_vllm_backend_covers_every_fname(engines, sample_data, tmp_path, monkeypatch, adapter):
    from dialsum.models import generation as gen_mod
    from dialsum.io.candidates import read_part
    from dialsum.models.generation import generate_candidates

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

    def run(self, *a, **kw):
        return self.engine.run(*a, **kw)

    def close(self):
        pass
