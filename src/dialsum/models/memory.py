"""`dialsum train --dry-run`: what would be trained and generated, and a peak GPU memory plan per stage.

Each model's training and generation run in their own child process, so the peaks do not add up across stages or
models: the plan is per stage, and a run needs the largest of them. Tensor bytes come from the parameter inventory
(dialsum.models.inventory) and what the code does to each tensor: k-bit loading packs every Linear but the LM head;
peft's `prepare_model_for_kbit_training` then upcasts every other bf16/fp16 tensor (embeddings, an untied LM head,
norms) to fp32; LoRA weights, their gradients and AdamW's two moments are fp32 (8-bit paged AdamW keeps 1-byte
moments for tensors of 4,096 elements or more, like bitsandbytes). Activations and the CUDA context are estimates.
"""
from __future__ import annotations

import math

from dialsum.config import GenerateSpec, ModelConfig
from dialsum.models.inventory import Inventory, architecture, inventory

GIB = 2**30
CARDS_GIB = {"24 GB": 24.0, "80 GB": 80.0}  # an RTX 3090/4090/A5000-class card; an A100/H100 80 GB
QUANT_OPTIONS = ("none", "8bit", "4bit")


def quantized_bytes(inv: Inventory, quantization: str) -> float:
    """The packed Linear weights: nf4 is half a byte per weight plus, with double quantisation, a 1-byte absmax per
    64-weight block and an fp32 absmax per 256 blocks; int8 is one byte plus an fp32 scale per output row."""
    n = inv.quantizable
    if quantization == "4bit":
        return n / 2 + n / 64 + n / 64 / 256 * 4 + inv.quantizable_modules * 1100  # + each module's code tables
    if quantization == "8bit":
        return n + inv.quantizable_rows * 4
    raise ValueError(quantization)


def compute_bytes(cfg: ModelConfig, gpu: bool = True) -> int:
    if cfg.precision == "fp32" or (cfg.precision == "auto" and not gpu):
        return 4
    return 2


def optimizer_name(cfg: ModelConfig, gpu: bool = True) -> str:
    """What training.train_model passes the Trainer (`train.optim`, auto by device and method)."""
    if cfg.train.optim != "auto":
        return cfg.train.optim
    return "paged_adamw_8bit" if gpu and cfg.method == "qlora" else "adamw_torch"


def new_token_rows(cfg: ModelConfig) -> int:
    """Tags the checkpoint's vocabulary lacks (trained as PEFT trainable-token rows): read from a local tokenizer;
    none in a tiny model built with them; all of them otherwise (no real checkpoint has them)."""
    from pathlib import Path

    from dialsum.models.special_tokens import TAGS

    if cfg.tiny is not None:
        return 0 if cfg.tiny.with_tags else len(TAGS)
    if cfg.path and (Path(cfg.path) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        vocab = AutoTokenizer.from_pretrained(cfg.path).get_vocab()
        return sum(t not in vocab for t in TAGS)
    return len(TAGS)


def train_tensors(cfg: ModelConfig, inv: Inventory | None = None, gpu: bool = True) -> dict[str, float]:
    """Bytes of the training child's tensors: frozen weights, trained ones (LoRA, tag rows; every weight in full
    fine-tuning, fp32), their gradients and the optimizer's state. CPU-measurable: tests count the same tensors on the tiny models."""
    inv = inv or inventory(cfg)
    if cfg.method == "full":  # fp32 master weights (bf16/fp16 only autocast), all trained
        sizes, weights = _full_sizes(inv), 0.0
    else:
        tokens = new_token_rows(cfg) * inv.hidden
        sizes = [s for i, o in inv.lora_shapes for s in (cfg.lora.r * i, cfg.lora.r * o)]
        sizes += [tokens] * (1 if inv.tied else 2) if tokens else []
        if cfg.method == "qlora":
            weights = quantized_bytes(inv, cfg.quantization) + inv.plain * 4.0  # upcast by peft's kbit preparation
        else:
            weights = inv.total * float(compute_bytes(cfg, gpu))
    trainable = float(sum(sizes))
    return {"weights": weights, "trainable": trainable * 4,
            "gradients": trainable * 4, "optimizer": _optimizer_bytes(optimizer_name(cfg, gpu), sizes)}


def _full_sizes(inv: Inventory) -> list[int]:
    return [inv.quantizable, inv.plain]  # element counts only matter per tensor for 8-bit optimizers: big tensors


def _optimizer_bytes(name: str, sizes: list[int]) -> float:
    if "8bit" not in name:
        return 8.0 * sum(sizes)  # exp_avg + exp_avg_sq in fp32
    # bitsandbytes: 1-byte moments + an fp32 absmax per 256-element block for tensors >= 4096 elements, else fp32
    return float(sum(2 * n + 2 * math.ceil(n / 256) * 4 if n >= 4096 else 8 * n for n in sizes))


def widest_decoding(cfg: ModelConfig) -> int:
    return max(max(d.n, d.num_beams if d.strategy == "beam" else 1) for d in cfg.decodings)


def kv_bytes_per_token(cfg: ModelConfig) -> float:
    arch, _ = architecture(cfg)
    return 2 * arch.num_layers * (arch.num_kv_heads or 8) * (arch.head_dim or arch.hidden_size // 32) * 2


def generation_gib(cfg: ModelConfig, gen: GenerateSpec | None, quantization: str, inv: Inventory | None = None,
                   backend: str = "hf") -> float | None:
    """Peak GiB of a generation child with `generate.quantization` = quantization on `backend` (None: the backend
    cannot load it). hf: k-bit via bitsandbytes, the rest in the compute dtype, the LoRA adapter unmerged (fp32).
    vllm: a merged checkpoint; 8bit is vLLM's online fp8 (one byte per Linear weight); no 4-bit loading."""
    inv = inv or inventory(cfg)
    cb = compute_bytes(cfg)
    if quantization == "none":
        weights = inv.total * cb
    elif backend == "vllm" and quantization == "4bit":
        return None
    elif backend == "vllm":
        weights = inv.quantizable + inv.plain * cb
    else:
        weights = quantized_bytes(inv, quantization) + inv.plain * cb
    adapter = 0.0 if backend == "vllm" or cfg.method == "full" else inv.lora_params(cfg.lora.r) * 4.0
    # sequences decoded at once: hf runs batch_size prompts x the widest decoding's beams/samples; vLLM fills its
    # share of the card with KV cache and needs room for one request's sequences at full length to start
    prompts = 1 if backend == "vllm" else (gen.batch_size if gen else 16)
    kv = prompts * widest_decoding(cfg) * (cfg.max_input_tokens + cfg.max_new_tokens) * kv_bytes_per_token(cfg)
    return ((weights + adapter + kv) * 1.1 + GIB) / GIB


def estimate_gpu_gib(cfg: ModelConfig, gen: GenerateSpec | None = None, inv: Inventory | None = None) -> dict[str, float]:
    """Peak GiB of the training child and of the generation child. Planning numbers, not promises.

    train: train_tensors + activations with gradient checkpointing (one hidden state per layer kept plus one layer's
    full activations) + fp32 logits and their gradient over the vocabulary, x1.15 for the allocator, + ~1 GiB of CUDA
    context. generate: generation_gib at `generate.quantization` on the configured backend."""
    inv = inv or inventory(cfg)
    arch, _ = architecture(cfg)
    tensors = train_tensors(cfg, inv)
    weights = tensors["weights"] + tensors["trainable"]
    lora = tensors["gradients"] + tensors["optimizer"]
    h, n_layers, vocab = inv.hidden, arch.num_layers, inv.vocab
    seq = cfg.max_input_tokens + cfg.max_new_tokens
    tokens = cfg.train.batch_size * seq
    acts = tokens * h * 2 * (n_layers + 16) + tokens * 4 * h * 2 * 4
    logits = tokens * vocab * 4 * 2  # fp32 logits and their gradient
    train = (weights + lora + acts + logits) * 1.15 + 1.0 * GIB
    quant = gen.quantization if gen else "none"
    backend = "vllm" if gen and gen.backend in ("vllm", "auto") else "hf"
    generate = generation_gib(cfg, gen, quant, inv, backend) or generation_gib(cfg, gen, quant, inv, "hf")
    out = {"weights": weights / GIB, "grads_and_optimizer": lora / GIB, "activations": (acts + logits) / GIB,
           "train": train / GIB, "generate": generate}
    if cfg.align.method != "none":  # the same model, `align_sequences` sequences per step instead of batch_size
        per_seq = (acts + logits) / max(1, cfg.train.batch_size)
        ref_copy = 0 if cfg.method == "full" else tensors["trainable"]  # TRL's frozen `ref` adapter: weights only
        sampled = seq * kv_bytes_per_token(cfg) * align_sequences(cfg) if cfg.align.method == "grpo" else 0
        out["align"] = ((weights + lora + ref_copy + per_seq * align_sequences(cfg) + sampled) * 1.15 + 1.0 * GIB) / GIB
    out["total"] = max(v for k, v in out.items() if k in ("train", "generate", "align"))
    return out


def align_sequences(cfg: ModelConfig) -> int:
    """Sequences one alignment step trains on: 2 per DPO pair, the group per GRPO prompt, samples + reference for
    rank; times the dialogues per step."""
    a = cfg.align
    return a.batch_size * {"dpo": 2, "grpo": a.samples, "rank": a.samples + 1}.get(a.method, 0)
