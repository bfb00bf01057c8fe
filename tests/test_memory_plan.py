"""The memory plan against the tensors the code really allocates, counted on the tiny models on CPU (#21 item 4).
The plan reads each tiny model's saved config.json, as it reads a real checkpoint's cached one:
frozen weights (4-bit packed data and its quantisation state, fp32-upcast embeddings/norms), trainable parameters,
their gradients and AdamW's state after one real step — each within ±15 % of dialsum.models.memory.train_tensors."""
from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

TOL = 0.15


def _bytes(t) -> int:
    return t.numel() * t.element_size()


def measured(model) -> dict[str, int]:
    """Bytes of every tensor training holds after one forward, backward and AdamW step (the Trainer's adamw_torch)."""
    import bitsandbytes as bnb
    import torch

    weights = sum(_bytes(p) for p in model.parameters() if not p.requires_grad)
    for m in model.modules():  # 4-bit: the packed uint8 data above, plus absmax (nested when double-quantised), codes
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            parts = [qs.absmax, qs.code] + ([qs.offset, qs.state2.absmax, qs.state2.code] if qs.nested else [])
            weights += sum(_bytes(t) for t in parts if torch.is_tensor(t))
        elif isinstance(m, bnb.nn.Linear8bitLt) and getattr(m.weight, "SCB", None) is not None:
            weights += _bytes(m.weight.SCB)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    return {"weights": weights, "trainable": sum(_bytes(p) for p in trainable),
            "gradients": sum(_bytes(p.grad) for p in trainable if p.grad is not None),
            "optimizer": sum(_bytes(t) for s in opt.state.values() for t in s.values()
                             if torch.is_tensor(t) and t.dim() > 0)}


@pytest.fixture(scope="module")
def untied_untagged_dir(tmp_path_factory, sample_data):
    """A tiny Llama like the real checkpoints: no competition tags in its vocabulary, an untied LM head."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    spec = TinyModelSpec(pretrain_steps=0, with_tags=False, tie_word_embeddings=False)
    return build_tiny_model(tmp_path_factory.mktemp("untied") / "model", sample_data.train, spec), spec


CASES = {  # model config edits; precision bf16 is where peft's k-bit preparation upcasts to fp32
    "qlora 4bit fp32": {},
    "qlora 4bit bf16": {"precision": "bf16"},
    "qlora 8bit bf16": {"precision": "bf16", "quantization": "8bit"},
    "lora bf16": {"precision": "bf16", "quantization": "none", "finetune": "lora"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_matches_counted_tensors_on_the_tiny_llama(case, tiny_cfg, tiny_model_dir):
    from dialsum.models.memory import train_tensors
    from dialsum.models.training import trainable_model

    cfg = type(tiny_cfg).model_validate({**tiny_cfg.model_dump(), **CASES[case]})  # re-validated: the edits form a legal config
    _, model = trainable_model(cfg, str(tiny_model_dir))
    _compare(train_tensors(cfg, gpu=False), measured(model), case)


def test_plan_counts_trainable_tag_rows_and_an_untied_head(untied_untagged_dir, tiny_cfg):
    """Like every real checkpoint: the tags are new rows trained as PEFT trainable tokens, in the embeddings and the
    untied LM head; k-bit preparation upcasts both whole matrices to fp32."""
    from dialsum.models.memory import train_tensors
    from dialsum.models.training import trainable_model

    path, _ = untied_untagged_dir
    cfg = tiny_cfg.model_copy(update={"precision": "bf16", "path": str(path)})
    _, model = trainable_model(cfg, str(path))
    plan, real = train_tensors(cfg, gpu=False), measured(model)
    _compare(plan, real, "untied, untagged")
    without_upcast = plan["weights"] - (plan["weights"] - _quant(cfg)) / 2  # the old plan: plain tensors at 2 bytes
    assert abs(without_upcast - real["weights"]) / real["weights"] > TOL  # so the test can tell the difference


def test_plan_matches_counted_tensors_for_full_fine_tuning(tiny_bart_cfg, tiny_bart_dir):
    from dialsum.models.memory import train_tensors
    from dialsum.models.training import trainable_model

    cfg = tiny_bart_cfg.model_copy(update={"precision": "bf16"})
    _, model = trainable_model(cfg, str(tiny_bart_dir))
    _compare(train_tensors(cfg, gpu=False), measured(model), "full")


def test_dry_run_shows_generation_options_and_fits_for_every_model():
    """`train --dry-run --config configs/competition.yaml`: per model, training and generation memory for each
    generate.quantization option and whether it fits a 24 GB card, an 80 GB card and the visible GPU."""
    from dialsum.config import load_config

    cfg = load_config(ROOT / "configs" / "competition.yaml")
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for m in cfg.models:
        block = out[out.index(f"{m.name}: "):]
        train = next(ln for ln in block.splitlines() if ln.strip().startswith(f"train:{m.name} "))
        assert "fits 24 GB: " in train and "80 GB: " in train and "visible: " in train
        rows = [ln.split() for ln in block.splitlines()[:40] if ln.strip().startswith(("hf ", "vllm "))]
        backends = {"hf", "vllm"} if m.family == "decoder" else {"hf"}
        assert {(r[0], r[1]) for r in rows[:3 * len(backends)]} == {(b, q) for b in backends
                                                                  for q in ("none", "8bit", "4bit")}
        for row in rows[:3 * len(backends)]:
            assert row[3:6] == ["n/a"] * 3 or all(c in ("yes", "no", "-") for c in row[3:6]), row
    # SOLAR-10.7B in bf16 does not fit vLLM's 90 % of a 24 GB card; its fp8 weights do
    solar = out[out.index("solar-10.7b: "):]
    rows = {(r[0], r[1]): r for r in (ln.split() for ln in solar.splitlines()[:20]) if r and r[0] in ("hf", "vllm")}
    assert rows[("vllm", "none")][3] == "no" and rows[("vllm", "8bit")][3] == "yes"


def _compare(plan: dict, real: dict, case: str) -> None:
    for part, value in real.items():
        assert plan[part] == pytest.approx(value, rel=TOL, abs=64), (case, part, plan[part], value)


def _quant(cfg) -> float:
    from dialsum.models.inventory import inventory
    from dialsum.models.memory import quantized_bytes

    return quantized_bytes(inventory(cfg), cfg.quantization)
