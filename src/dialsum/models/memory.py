"""`dialsum train --dry-run`: what would be trained and generated, and a peak GPU memory plan per stage.

Each model's training and generation run in their own child process, so the peaks do not add up across stages or
models: the plan is per stage, and a run needs the largest of them. Architecture numbers (vocabulary, width, depth)
come from a cached config.json when there is one, else from the model config's `arch`, else from a rough guess.
"""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.config import ArchSpec, GenerateSpec, ModelConfig

GIB = 2**30


def architecture(cfg: ModelConfig) -> tuple[ArchSpec, str]:
    """(numbers, where they came from)."""
    if cfg.tiny is not None:
        t = cfg.tiny
        return ArchSpec(vocab_size=t.vocab_size + 32, hidden_size=t.hidden_size, num_layers=t.num_hidden_layers,
                        num_kv_heads=t.num_key_value_heads, head_dim=t.hidden_size // t.num_attention_heads), "tiny spec"
    cached = _cached_config(cfg.path)
    if cached:
        c = cached
        hidden = c.get("hidden_size") or c.get("n_embd") or c.get("d_model")
        layers = c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers")
        heads = c.get("num_attention_heads") or c.get("n_head")
        if c.get("vocab_size") and hidden and layers:
            return ArchSpec(vocab_size=c["vocab_size"], hidden_size=hidden, num_layers=layers,
                            num_kv_heads=c.get("num_key_value_heads") or heads,
                            head_dim=c.get("head_dim") or (hidden // heads if heads else None)), "cached config.json"
    if cfg.arch is not None:
        return cfg.arch, "model config `arch`"
    p = (cfg.params_billion or 0.001) * 1e9
    hidden = max(128, int((p / 12 / 32) ** 0.5))
    return ArchSpec(vocab_size=32000, hidden_size=hidden, num_layers=32), "guess (no arch given)"


def _cached_config(path: str | None) -> dict | None:
    if not path:
        return None
    local = Path(path) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(path, "config.json")
        return json.loads(Path(hit).read_text()) if isinstance(hit, str) else None
    except Exception:  # noqa: BLE001 - no cache, no hub library: fall back to the config's numbers
        return None


def estimate_gpu_gib(cfg: ModelConfig, gen: GenerateSpec | None = None) -> dict[str, float]:
    """Peak GiB of the training child and of the generation child. Planning numbers, not promises.

    train: weights at the quantised width + LoRA weights/grads/Adam + activations with gradient checkpointing (one
    hidden state per layer kept plus one layer's full activations) + fp32 logits over the real vocabulary + ~1 GiB of
    CUDA context. generate (vLLM): bf16 weights + a KV cache for one batch of full-length sequences; vLLM itself
    reserves `gpu_memory_utilization` of the card and fills the rest with KV cache.
    """
    arch, _ = architecture(cfg)
    p = (cfg.params_billion or 0.001) * 1e9
    bits = {"4bit": 4.5, "8bit": 8.5, "none": 16}[cfg.quantization]
    weights = p * bits / 8
    h, n_layers, vocab = arch.hidden_size, arch.num_layers, arch.vocab_size
    # LoRA parameters are fp32 (peft upcasts them): weight 4 + grad 4 + two Adam moments 8 bytes each
    lora = n_layers * len(cfg.target_modules) * 2 * cfg.lora.r * h * (4 + 4 + 8)
    if cfg.method == "full":  # every weight trained, kept in fp32 (bf16/fp16 only autocast): weight 4 bytes, then
        weights, lora = p * 4, p * 12  # its fp32 gradient and two fp32 Adam moments
    seq = cfg.max_input_tokens + cfg.max_new_tokens
    tokens = cfg.train.batch_size * seq
    acts = tokens * h * 2 * (n_layers + 16) + tokens * 4 * h * 2 * 4
    logits = tokens * vocab * 4 * 2  # fp32 logits and their gradient
    train = (weights + lora + acts + logits) * 1.15 + 1.0 * GIB
    batch = (gen.batch_size if gen else 16)
    kv_per_token = 2 * n_layers * (arch.num_kv_heads or 8) * (arch.head_dim or h // 32) * 2
    kv = batch * seq * kv_per_token
    generate = (p * 2 + kv) * 1.1 + 1.0 * GIB
    out = {"weights": weights / GIB, "lora_and_optimizer": lora / GIB, "activations": (acts + logits) / GIB,
           "train": train / GIB, "generate": generate / GIB}
    if cfg.align.method != "none":  # the same model, `align_sequences` sequences per step instead of batch_size
        per_seq = (acts + logits) / max(1, cfg.train.batch_size)
        ref_copy = 0 if cfg.method == "full" else lora / 4  # TRL's frozen `ref` adapter: weights only
        sampled = kv / batch * align_sequences(cfg) if cfg.align.method == "grpo" else 0  # generate's KV cache
        out["align"] = ((weights + lora + ref_copy + per_seq * align_sequences(cfg) + sampled) * 1.15 + 1.0 * GIB) / GIB
    out["total"] = max(v for k, v in out.items() if k in ("train", "generate", "align"))
    return out


def align_sequences(cfg: ModelConfig) -> int:
    """Sequences one alignment step trains on: 2 per DPO pair, the group per GRPO prompt, samples + reference for
    rank; times the dialogues per step."""
    a = cfg.align
    return a.batch_size * {"dpo": 2, "grpo": a.samples, "rank": a.samples + 1}.get(a.method, 0)


def describe_plan(cfg: ModelConfig, gen: GenerateSpec | None = None) -> str:
    t = cfg.train
    est = estimate_gpu_gib(cfg, gen)
    arch, where = architecture(cfg)
    source = cfg.path or "tiny local model (built on demand)"
    return (f"{cfg.name}: {source} [{cfg.model_type}, {cfg.params_billion or '<0.001'}B params, vocab "
            f"{arch.vocab_size}, hidden {arch.hidden_size}, {arch.num_layers} layers ({where})]\n"
            f"  family={cfg.family} finetune={cfg.method} format={cfg.prompt_format} quant={cfg.quantization} "
            f"precision={cfg.precision} "
            f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} on {','.join(cfg.target_modules)}\n"
            f"  lr={t.learning_rate} epochs={t.epochs} batch={t.batch_size}x{t.grad_accum} warmup={t.warmup_ratio} "
            f"augment={t.augment} max_input={cfg.max_input_tokens} max_new={cfg.max_new_tokens}\n"
            f"  decodings: {', '.join(d.name for d in cfg.decodings)}\n"
            f"  est. GPU memory: {est['total']:.1f} GiB peak over its stages, each its own child process:\n"
            f"    train:{cfg.name}    {est['train']:.1f} GiB (weights {est['weights']:.1f}, LoRA+optim "
            f"{est['lora_and_optimizer']:.2f}, activations+logits {est['activations']:.1f})\n"
            f"    generate:{cfg.name} {est['generate']:.1f} GiB (bf16 weights + KV cache for one batch; vLLM "
            f"reserves gpu_memory_utilization of the card)" + _align_line(cfg, est))


def _align_line(cfg: ModelConfig, est: dict) -> str:
    a = cfg.align
    if a.method == "none":
        return ""
    sampled = a.rows * a.samples if a.method in ("dpo", "rank") else a.steps * a.batch_size * a.samples
    return (f"\n    align:{cfg.name}    {est['align']:.1f} GiB ({a.method}: {align_sequences(cfg)} sequences per step "
            f"x {a.steps} steps; {sampled} sampled summaries"
            f"{' (prefs stage, batched generation)' if a.method != 'grpo' else ' (generated inside training)'}; "
            f"time ~ {a.steps * align_sequences(cfg)} training sequences, vs SFT's epochs x train rows)")
