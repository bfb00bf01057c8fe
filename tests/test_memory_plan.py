"""The memory plan against the tensors the code really allocates, on the tiny models on CPU. The plan reads each tiny
model's saved config.json, as it reads a real checkpoint's cached one.

* Counted tensors: frozen weights (4-bit packed data and its quantisation state, fp32-upcast embeddings/norms),
  trainable parameters, their gradients and AdamW's state after one real step, each within 3 % of
  dialsum.models.memory.train_tensors.
* Measured peaks: the live tensor bytes at the peak of one whole training step (forward, backward, optimizer; every
  storage any op allocates, tests/live_bytes.py) on the tag-less, untied stand-in, for 4-bit QLoRA as the CPU runs it
  and as a GPU runs it (bf16 autocast, gradient checkpointing), and for a DPO step through TRL, each within 15 % of
  dialsum.models.memory.step_peak_bytes."""
from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

TOL = 0.03  # counted tensors: the plan multiplies the same shapes by the same bytes
PEAK_TOL = 0.15  # measured peaks: activations and transients are modelled, not counted


def _bytes(t) -> int:
    return t.numel() * t.element_size()


def measured(model, optim: str = "adamw_torch") -> dict[str, int]:
    """Bytes of every tensor training holds after one forward, backward and optimizer step: the Trainer's
    adamw_torch, or bitsandbytes' paged 8-bit AdamW (the GPU default for QLoRA; it runs on CPU too). A tensor shared
    between parameters' states (8-bit AdamW's quantisation map) counts once."""
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
    opt = (bnb.optim.PagedAdamW8bit(trainable, lr=1e-4) if optim == "paged_adamw_8bit"
           else torch.optim.AdamW(trainable, lr=1e-4))
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    state = {t.data_ptr(): t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0}
    return {"weights": weights, "trainable": sum(_bytes(p) for p in trainable),
            "gradients": sum(_bytes(p.grad) for p in trainable if p.grad is not None),
            "optimizer": sum(_bytes(t) for t in state.values())}


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


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory, sample_data):
    """A tiny Llama whose Linear layers dominate (hidden 256, MLP 1,024, a 300-token vocabulary; tag-less, untied):
    the nf4 packing and 8-bit optimizer moments carry its plan, as they do a real 7B model's."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    spec = TinyModelSpec(vocab_size=300, hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                         num_key_value_heads=8, pretrain_steps=0, with_tags=False, tie_word_embeddings=False)
    return build_tiny_model(tmp_path_factory.mktemp("wide") / "model", sample_data.train, spec)


@pytest.mark.parametrize("optim", ["adamw_torch", "paged_adamw_8bit"])
def test_plan_matches_counted_tensors_where_linear_layers_dominate(optim, wide_dir, tiny_cfg):
    from dialsum.models.inventory import inventory
    from dialsum.models.memory import train_tensors
    from dialsum.models.training import trainable_model

    cfg = tiny_cfg.model_copy(update={"path": str(wide_dir), "precision": "bf16"})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"optim": optim})})
    inv = inventory(cfg)
    assert inv.quantizable > 3 * inv.plain  # the Linear layers dominate the weights
    _, model = trainable_model(cfg, str(wide_dir))
    plan, real = train_tensors(cfg, gpu=False), measured(model, optim)
    _compare(plan, real, f"linear-dominated, {optim}")
    if optim == "paged_adamw_8bit":  # 1-byte moments for the large tensors: well under AdamW's 8 bytes an element
        assert real["optimizer"] < 0.6 * 2 * real["trainable"]


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


def _quant_state(model) -> list:
    import bitsandbytes as bnb
    import torch

    out = []
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            out += [qs.absmax, qs.code] + ([qs.offset, qs.state2.absmax, qs.state2.code] if qs.nested else [])
        elif isinstance(m, bnb.nn.Linear8bitLt) and getattr(m.weight, "SCB", None) is not None:
            out.append(m.weight.SCB)
    return [t for t in out if torch.is_tensor(t)]


def _padded_batch(tokenizer, cfg, rows, stops):
    """Training rows padded to exactly max_input_tokens + max_new_tokens: the plan's worst case, every sequence full."""
    import torch

    from dialsum.models.training import build_examples

    width = cfg.max_input_tokens + cfg.max_new_tokens
    ex = build_examples(tokenizer, rows, cfg, 0, stops)
    pad = {"input_ids": tokenizer.pad_token_id, "labels": -100, "attention_mask": 0}
    return {k: torch.tensor([(e[k] + [v] * width)[:width] for e in ex]) for k, v in pad.items()}


@pytest.mark.parametrize("mode", ["cpu: fp32, no checkpointing", "gpu-like: bf16 autocast, gradient checkpointing"])
def test_plan_predicts_the_measured_peak_of_a_qlora_training_step(mode, tiny_cfg, sample_data):
    """One steady-state QLoRA step (the second: AdamW's state exists) on the tag-less, untied stand-in: the peak of
    live tensor bytes over forward, backward and the optimizer step, against step_peak_bytes."""
    import torch

    from dialsum.models.encoding import model_stops
    from dialsum.models.memory import step_peak_bytes
    from dialsum.models.training import trainable_model
    from live_bytes import PeakLiveBytes

    gpu_like = mode.startswith("gpu")
    cfg = tiny_cfg.model_copy(update={"precision": "bf16" if gpu_like else "fp32", "max_input_tokens": 192,
                                      "max_new_tokens": 64})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 8})})
    tokenizer, model = trainable_model(cfg, cfg.path)
    if gpu_like:  # what prepare_model_for_kbit_training does on a GPU
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    batch = _padded_batch(tokenizer, cfg, sample_data.train[:8], model_stops(tokenizer, model.generation_config.eos_token_id, cfg))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)  # the Trainer's adamw_torch
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=gpu_like):
            loss = model(**batch).loss
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    state = [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]
    with PeakLiveBytes(model.parameters(), model.buffers(), _quant_state(model), state) as probe:
        step()
    plan = step_peak_bytes(cfg, gpu=False, amp=gpu_like, checkpointing=gpu_like)
    assert plan["peak"] == pytest.approx(probe.peak, rel=PEAK_TOL), (mode, plan, probe.peak)
    # the activations are most of it, so the test can tell a plan that counts them from one that does not
    assert probe.peak - probe.start > 0.6 * probe.peak


def test_plan_predicts_the_measured_peak_of_a_dpo_step(tiny_cfg, sample_data, tmp_path):
    """A DPO step through TRL on the tag-less, untied stand-in (SFT adapter with trained tag rows, TRL's `ref` copy,
    its fused log-probabilities): the peak of live tensor bytes against step_peak_bytes(stage="align")."""
    import torch

    from dialsum.align import dpo
    from dialsum.align.policy import load_policy
    from dialsum.align.preferences import Ranked, dpo_pairs
    from dialsum.config import AlignSpec
    from dialsum.models.memory import step_peak_bytes
    from dialsum.models.training import trainable_model
    from live_bytes import PeakLiveBytes

    cfg = tiny_cfg.model_copy(update={"align": AlignSpec(method="dpo", steps=1, batch_size=4, save_steps=10)})
    _, sft = trainable_model(cfg, cfg.path)  # an untrained SFT adapter with tag rows stands in for a trained one
    sft.save_pretrained(tmp_path / "sft")
    tokenizer, model, stops = load_policy(cfg, cfg.path, tmp_path / "sft")
    rows = sample_data.train[:4]
    prefs = [r for a, b in zip(rows, rows[1:] + rows[:1])
             for r in (Ranked(a.fname, a.summary, 60.0, 1), Ranked(a.fname, b.summary, 10.0, 2))]
    ds = dpo.pair_dataset(tokenizer, cfg, {d.fname: d for d in rows}, dpo_pairs(prefs, 1.0, 1), stops)
    trainer = dpo.make_trainer(model, tokenizer, cfg, cfg.align, ds, None, tmp_path / "ck", [])
    with PeakLiveBytes(model.parameters(), model.buffers(), _quant_state(model)) as probe:
        trainer.train()
    # TRL pads the 8 sequences of the step to its longest: the plan's full-length sequence is that length
    width = max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in ds)
    planned = cfg.model_copy(update={"max_input_tokens": width - cfg.max_new_tokens})
    plan = step_peak_bytes(planned, gpu=False, stage="align")
    assert plan["peak"] == pytest.approx(probe.peak, rel=PEAK_TOL), (plan, probe.peak)


def test_dry_run_says_what_to_change_when_training_does_not_fit_a_24_gb_card():
    """Qwen2.5-7B at 4 x 4 (its old config): a 152k vocabulary's log-softmax and gradients and the tag rows' merged
    head put the step over what a 24 GB card gives (23.6 GiB); the dry run says so and what fits, and that fits."""
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml",
                "--set", "models.qwen2.5-7b.train.batch_size=4", "--set", "models.qwen2.5-7b.train.grad_accum=4")
    assert r.returncode == 0, r.stderr
    block = r.stdout[r.stdout.index("qwen2.5-7b: "):]
    train = next(ln for ln in block.splitlines() if ln.strip().startswith("train:qwen2.5-7b "))
    assert "fits 24 GB: no" in train and float(train.split()[1]) > 23.6
    hint = next(ln for ln in block.splitlines() if "does not fit 24 GB" in ln)
    assert "train.batch_size 2 and train.grad_accum 8 (the same 16 rows a step)" in hint
    planned = float(hint.split(" plan ")[1].split()[0])
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml",
                "--set", "models.qwen2.5-7b.train.batch_size=2", "--set", "models.qwen2.5-7b.train.grad_accum=8")
    train = next(ln for ln in r.stdout[r.stdout.index("qwen2.5-7b: "):].splitlines()
                 if ln.strip().startswith("train:qwen2.5-7b "))
    assert float(train.split()[1]) == planned <= 23.6 and "fits 24 GB: yes" in train
