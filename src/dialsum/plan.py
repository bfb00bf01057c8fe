"""`dialsum train --dry-run`: what would be trained, and a rough GPU memory estimate per model."""
from __future__ import annotations

from dialsum.config import ModelConfig


def estimate_gpu_gib(cfg: ModelConfig, hidden_size: int | None = None, layers: int | None = None) -> dict[str, float]:
    """Weights at the quantised width + LoRA params/grads/optimizer + activations (checkpointed), in GiB.

    A planning number, not a promise: activations assume gradient checkpointing (one hidden state per layer kept,
    plus one layer's full activations), ~4 bytes/activation element for bf16 with overhead.
    """
    p = (cfg.params_billion or 0.001) * 1e9
    bits = {"4bit": 4.5, "8bit": 8.5, "none": 16}[cfg.quantization]
    weights = p * bits / 8
    hidden = hidden_size or int((p / 12 / 32) ** 0.5) or 128  # d from P ~ 12 * L * d^2 with L = 32
    n_layers = layers or 32
    lora_params = n_layers * len(cfg.target_modules) * 2 * cfg.lora.r * hidden
    lora = lora_params * (2 + 2 + 8 + 4)  # bf16 weight + grad, Adam moments fp32, master copy
    seq = cfg.max_input_tokens + cfg.max_new_tokens
    tokens = cfg.train.batch_size * seq
    acts = tokens * hidden * 2 * (n_layers + 16) + tokens * 4 * hidden * 2 * 4
    logits = tokens * 32000 * 4
    total = (weights + lora + acts + logits) * 1.15 + 1.0 * 2**30  # allocator and CUDA context
    g = 2**30
    return {"weights": weights / g, "lora_and_optimizer": lora / g, "activations": (acts + logits) / g, "total": total / g}


def describe_plan(cfg: ModelConfig) -> str:
    t = cfg.train
    est = estimate_gpu_gib(cfg)
    source = cfg.path or "tiny local model (built on demand)"
    return (f"{cfg.name}: {source} [{cfg.model_type}, {cfg.params_billion or '<0.001'}B params]\n"
            f"  format={cfg.prompt_format} quant={cfg.quantization} precision={cfg.precision} "
            f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} on {','.join(cfg.target_modules)}\n"
            f"  lr={t.learning_rate} epochs={t.epochs} batch={t.batch_size}x{t.grad_accum} warmup={t.warmup_ratio} "
            f"augment={t.augment} max_input={cfg.max_input_tokens} max_new={cfg.max_new_tokens}\n"
            f"  decodings: {', '.join(d.name for d in cfg.decodings)}\n"
            f"  est. GPU memory: {est['total']:.1f} GiB (weights {est['weights']:.1f}, LoRA+optim "
            f"{est['lora_and_optimizer']:.2f}, activations {est['activations']:.1f})")
