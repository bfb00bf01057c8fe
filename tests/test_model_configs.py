"""Every model config validates, and every configured LoRA target module exists in that architecture."""
from __future__ import annotations

import pytest

from conftest import ROOT, run_cli
from dialsum.config import load_config, load_model_config, vllm_lora_rank

MODEL_FILES = sorted((ROOT / "configs" / "models").glob("*.yaml"))
TINY_ARCH = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
             "num_key_value_heads": 2, "vocab_size": 128}


def test_the_plan_models_are_configured():
    paths = {load_model_config(p).path for p in MODEL_FILES}
    for hub_id in ("EleutherAI/polyglot-ko-5.8b", "kakaobrain/kogpt", "beomi/llama-2-ko-7b",
                   "upstage/SOLAR-10.7B-Instruct-v1.0", "Qwen/Qwen2.5-7B-Instruct"):
        assert hub_id in paths
    assert len(MODEL_FILES) >= 9


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_target_modules_exist_in_a_tiny_random_model_of_that_architecture(path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = load_model_config(path)
    arch = dict(TINY_ARCH)
    if cfg.model_type == "gptj":
        arch = {"n_layer": 1, "n_embd": 64, "n_head": 2, "rotary_dim": 16, "vocab_size": 128}
    elif cfg.model_type == "gpt_neox":
        arch.pop("num_key_value_heads")
    elif cfg.model_type in ("bart", "mbart"):
        arch = {"d_model": 64, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "vocab_size": 128}
    elif cfg.model_type == "t5":
        arch = {"d_model": 64, "d_kv": 16, "d_ff": 64, "num_layers": 1, "num_heads": 2, "vocab_size": 128,
                "feed_forward_proj": "gated-gelu"}  # pko-t5 is T5 v1.1: gated feed-forward (wi_0, wi_1)
    auto = AutoModelForSeq2SeqLM if cfg.family == "seq2seq" else AutoModelForCausalLM
    model = auto.from_config(AutoConfig.for_model(cfg.model_type, **arch))
    leaf_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if not list(m.children())}
    missing = [t for t in cfg.target_modules if t not in leaf_names]
    assert not missing, f"{path.name}: {missing} not in {sorted(leaf_names)}"
    assert vllm_lora_rank(cfg.lora.r) == cfg.lora.r  # a rank vLLM serves as is


def test_competition_config_validates_and_dry_run_prints_the_plan():
    cfg = load_config(ROOT / "configs" / "competition.yaml")
    assert len(cfg.models) >= 3
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml")
    assert r.returncode == 0, r.stderr
    for m in cfg.models:
        assert m.name in r.stdout
    assert r.stdout.count("est. GPU memory") == len(cfg.models)


def test_unreachable_hub_model_and_big_model_on_cpu_fail_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: x\ndata: {{dir: {ROOT / 'data' / 'sample'}}}\nmodels:\n"
                   f"  - base: {ROOT / 'configs' / 'models' / 'solar-10.7b.yaml'}\n    path: no-such-org/no-such-model\n")
    r = run_cli("train", "--config", str(cfg), "--output-dir", str(tmp_path / "runs"), env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no-such-org/no-such-model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    local = tmp_path / "fake-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    cfg.write_text(cfg.read_text().replace("no-such-org/no-such-model", str(local)))
    r = run_cli("train", "--config", str(cfg), "--output-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "GPU" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_invalid_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {dir: .}\nmodels:\n  - {name: m, path: p, target_modules: [q], lora: {r: 0}}\n")
    r = run_cli("run", "--config", str(bad))
    assert r.returncode == 2 and "lora.r" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
