"""A checkpoint whose vocabulary lacks the competition's tags, like every real one, and whose LM head is its own matrix
(as in Llama-3.1-8B): dialsum adds the tags, trains their input and output rows (PEFT trainable tokens), and vLLM,
which rejects such an adapter, serves a merged checkpoint that generates exactly what transformers generates with
the adapter. Never skipped."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from conftest import ROOT
from dialsum.config import DecodingSpec, GenerateSpec, MetricSpec, TinyModelSpec
from dialsum.models.special_tokens import TAGS


@pytest.fixture(scope="module")
def tagless(tmp_path_factory, sample_data):
    from dialsum.config import load_model_config
    from dialsum.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tagless") / "model"
    build_tiny_model(out, sample_data.train, TinyModelSpec(pretrain_steps=60, with_tags=False,
                                                                  tie_word_embeddings=False))
    cfg = load_model_config(ROOT / "configs" / "models" / "tiny.yaml")
    return cfg.model_copy(update={"path": str(out), "tiny": None, "name": "tagless", "max_new_tokens": 24})


@pytest.fixture(scope="module")
def tagless_adapter(tagless, sample_data, tmp_path_factory):
    from dialsum.models.training import train_model

    cfg = tagless.model_copy(update={"train": tagless.train.model_copy(
        update={"max_steps": 12, "eval_steps": 12, "eval_subset": 2, "early_stopping_patience": None})})
    return train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path_factory.mktemp("ad"),
                       MetricSpec()).weights_dir


@pytest.fixture(scope="module")
def aligned_tagless_adapter(tagless, tagless_adapter, sample_data, tmp_path_factory):
    """The SFT adapter continued by DPO (TRL, with its frozen `ref` copy) and saved the way the align stage saves it:
    what `generate:<model>` serves after alignment."""
    import torch

    from dialsum.align import dpo
    from dialsum.align.policy import load_policy, save_policy
    from dialsum.config import AlignSpec

    spec = AlignSpec(method="dpo", steps=4, batch_size=4, learning_rate=1e-2, save_steps=4)
    tok, model, stops = load_policy(tagless, tagless.path, tagless_adapter)
    rows = {d.fname: d for d in sample_data.train[:8]}
    pairs = [(f, d.summary, d.summary.split(".")[0][:12], 1.0) for f, d in rows.items()]  # the reference beats a stub
    out = tmp_path_factory.mktemp("aligned")
    trainer = dpo.make_trainer(model, tok, tagless, spec, dpo.pair_dataset(tok, tagless, rows, pairs, stops), None,
                               out / "checkpoints", [])
    trainer.train()
    assert set(model.peft_config) == {"default", "ref"}
    # TRL scores with its own fused LM head (lm_head.weight / .bias); through PEFT's trainable tag rows it must give
    # the log-probs of the model's ordinary forward, tag tokens included, for the policy and for the `ref` copy
    from trl.trainer.utils import use_adapter

    ids = torch.tensor([tok(sample_data.dev[0].dialogue[:200], add_special_tokens=False)["input_ids"]])
    assert set(ids[0].tolist()) & set(tok.dialsum_added_ids)
    model.eval()
    for adapter in ("default", "ref"):
        with torch.no_grad(), use_adapter(model, adapter):
            fused = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs
            plain = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1).gather(
                -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(fused, plain, atol=1e-4), adapter
    saved = save_policy(trainer.model, tok, out)
    from safetensors.torch import load_file

    before, after = load_file(tagless_adapter / "adapter_model.safetensors"), load_file(saved / "adapter_model.safetensors")
    assert set(before) == set(after)  # same adapter layout (tags' trainable rows included), no `ref` weights
    assert any(not torch.equal(before[k], after[k]) for k in before)  # and DPO moved it
    return saved


def test_tags_are_added_trained_and_mean_initialised(tagless, tagless_adapter, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from dialsum.models.loading import fit_embeddings, load_model, load_tokenizer
    from dialsum.models.vllm_backend import _has_token_rows

    assert not set(TAGS) & set(AutoTokenizer.from_pretrained(tagless.path).get_vocab())
    tok = load_tokenizer(tagless.path, tagless)
    assert len(tok.dialsum_added_ids) == len(TAGS)
    conf = json.loads((tagless_adapter / "adapter_config.json").read_text())
    # the tiny Llama's LM head is its own matrix: the tags' output rows are trained too, or they could never be written
    assert conf["trainable_token_indices"] == {"embed_tokens": tok.dialsum_added_ids, "lm_head": tok.dialsum_added_ids}
    assert _has_token_rows(tagless_adapter)
    from dialsum.models.generation import HFEngine

    tuned = HFEngine(tagless, tagless.path, tagless_adapter, 4).model.merge_and_unload()
    base = load_model(tagless.path, tagless, "none")
    fit_embeddings(base, tok)
    ids = tok.dialsum_added_ids
    others = [i for i in range(base.get_input_embeddings().weight.shape[0]) if i not in ids]
    for get in ("get_input_embeddings", "get_output_embeddings"):
        w_tuned, w_base = getattr(tuned, get)().weight, getattr(base, get)().weight
        assert not torch.allclose(w_tuned[ids], w_base[ids])  # trained away from their start
        assert torch.equal(w_tuned[others], w_base[others])  # no other row moved
    # a checkpoint that pads its matrix beyond the tokenizer (as Qwen does): the tags land on padding rows, which
    # are set to the mean of the real rows and still reported for training
    padded = tmp_path / "padded"
    model = load_model(tagless.path, tagless, quantization="none")
    n = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(n + 32)
    with torch.no_grad():
        model.get_input_embeddings().weight[n:] = 7.0
    model.save_pretrained(padded)
    AutoTokenizer.from_pretrained(tagless.path).save_pretrained(padded)
    tok = load_tokenizer(str(padded), tagless)
    model = load_model(str(padded), tagless, quantization="none")
    ids = fit_embeddings(model, tok)
    assert ids == tok.dialsum_added_ids and max(ids) < n + 32 and model.get_input_embeddings().weight.shape[0] == n + 32
    w = model.get_input_embeddings().weight
    assert torch.allclose(w[ids], w[:n].mean(0).expand(len(ids), -1), atol=1e-6)
    # a tokenizer with a token beyond the matrix (besides the tags): that row is grown, set to the mean and trained
    extra = tmp_path / "extra"
    AutoTokenizer.from_pretrained(tagless.path).save_pretrained(extra)
    t = AutoTokenizer.from_pretrained(extra)
    t.add_tokens(["<extra-token>"])
    t.save_pretrained(extra)
    load_model(tagless.path, tagless, quantization="none").save_pretrained(extra)
    tok = load_tokenizer(str(extra), tagless)
    model = load_model(str(extra), tagless, quantization="none")
    ids = fit_embeddings(model, tok)
    assert ids == list(range(n, len(tok))) and len(ids) == len(TAGS) + 1
    w = model.get_input_embeddings().weight
    assert w.shape[0] == len(tok) and torch.allclose(w[ids], w[:n].mean(0).expand(len(ids), -1), atol=1e-6)


def test_merged_base_without_adapter_is_the_model_transformers_runs(tagless, tmp_path):
    import torch

    from dialsum.models.generation import HFEngine
    from dialsum.models.loading import load_model
    from dialsum.models.vllm_backend import servable_checkpoint

    path, lora = servable_checkpoint(tagless, tagless.path, None, tmp_path)
    assert lora is None and path == str(tmp_path.resolve() / "vllm-model")
    merged = load_model(path, tagless, quantization="none")
    hf = HFEngine(tagless, tagless.path, None, 4)
    ids = torch.tensor([hf.tokenizer("#Person1#: 안녕하세요 #Person2#: 네", add_special_tokens=False)["input_ids"]])
    assert ids.max() >= merged.config.vocab_size - len(TAGS)  # the prompt really uses the added rows
    with torch.no_grad():
        assert torch.equal(merged(ids).logits, hf.model(ids).logits)
    assert servable_checkpoint(tagless, tagless.path, None, tmp_path) == (path, None)  # written once


def test_vllm_serves_the_merged_aligned_adapter_like_transformers(tagless, aligned_tagless_adapter, sample_data,
                                                                 tmp_path):
    """The merged path with an adapter after SFT and DPO (the SFT adapter goes through the same code)."""
    tagless_adapter = aligned_tagless_adapter
    from dialsum.models.generation import HFEngine
    from dialsum.models.prompts import encode_prompt
    from dialsum.models.encoding import style_of
    from dialsum.models.vllm_backend import VLLMEngine

    v = VLLMEngine(tagless, tagless.path, tagless_adapter, GenerateSpec(), tmp_path)
    try:
        assert v.lora is None and (tmp_path.resolve() / "vllm-model" / "config.json").is_file()
        hf = HFEngine(tagless, tagless.path, tagless_adapter, 8)
        prompts = [encode_prompt(v.tokenizer, d.dialogue, style_of(tagless), tagless.max_input_tokens)
                   for d in sample_data.dev[:8]]
        assert max(max(p) for p in prompts) >= min(v.tokenizer.dialsum_added_ids or [10**9]) or any(
            t in p for p in prompts for t in hf.tokenizer.dialsum_added_ids)
        g = DecodingSpec(name="greedy")
        assert [x[0][0] for x in v.run(prompts, g, None)] == [x[0][0] for x in hf.run(prompts, g, None)]
    finally:
        v.close()
    assert not (tmp_path / "vllm-model").exists()  # the full copy is gone once the engine is
    for p in multiprocessing.active_children():
        p.join(30)  # shutdown is asynchronous
    assert not [p for p in multiprocessing.active_children() if "EngineCore" in p.name]
