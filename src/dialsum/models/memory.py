"""`dialsum train --dry-run`: what would be trained and generated, and a peak GPU memory plan per stage.

Each model's training and generation run in their own child process, so the peaks do not add up across stages or
models: the plan is per stage, and a run needs the largest of them. Tensor bytes come from the parameter inventory
(dialsum.models.inventory) and what the code does to each tensor: k-bit loading packs every Linear but the LM head;
peft's `prepare_model_for_kbit_training` then upcasts every other bf16/fp16 tensor (embeddings, an untied LM head,
norms) to fp32; LoRA weights, their gradients and AdamW's two moments are fp32 (8-bit paged AdamW keeps 1-byte
moments for tensors of 4,096 elements or more, like bitsandbytes).

A training step's peak adds what one step allocates on top (`step_activations`), counted from what the code does and
checked against the live tensor bytes of real steps on CPU (tests/test_memory_plan.py): each decoder layer's saved
activations (every layer without gradient checkpointing; with it, each layer's input plus one layer recomputed),
the loss head (log-softmax and the gradients of it and of the logits, fp32), PEFT's trainable-token
wrapper of an LM head whose tag rows are trained (it builds the whole merged V x h matrix every forward and its full
gradient in backward), and for DPO/GRPO TRL's fused log-probabilities (a fixed 4,096 x 32,768 tile instead of the
logits, its own tile again in backward, fp32 gradients of the hidden states and the merged head). The CUDA context
and the allocator's slack are estimates (+1 GiB, x1.15).
"""
from __future__ import annotations

import math

from dialsum.config import GenerateSpec, ModelConfig
from dialsum.models.inventory import Inventory, architecture, inventory

GIB = 2**30
# what CUDA reports as a card's total memory (less than its label): an RTX 3090/4090/A5000 24 GB, an A100/H100 80 GB
CARDS_GIB = {"24 GB": 23.6, "80 GB": 79.1}
# TRL 1.16's fused log-probabilities (trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE, trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE): one [tokens x vocab] tile of these sizes, in the compute dtype, whatever the vocabulary
TRL_TOKEN_TILE, TRL_VOCAB_TILE = 4096, 32768
# bytes per saved activation element of a decoder layer under bf16/fp16 autocast: the outputs of the matmuls are
# 16-bit, the norms' outputs and the residual stream stay fp32 after k-bit preparation (measured under CPU autocast)
AMP_LAYER_BYTES = 3.7
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


def served_weight_bytes(cfg: ModelConfig, inv: Inventory, quantization: str, backend: str = "hf") -> float | None:
    """The base weights a generation engine holds (and reads once per decode step): the compute dtype; bitsandbytes'
    k-bit packing on transformers; vLLM's online fp8 (one byte per Linear weight) for 8bit, no 4-bit loading (None)."""
    cb = compute_bytes(cfg)
    if quantization == "none":
        return inv.total * cb
    if backend == "vllm":
        return None if quantization == "4bit" else inv.quantizable + inv.plain * cb
    return quantized_bytes(inv, quantization) + inv.plain * cb


def generation_gib(cfg: ModelConfig, gen: GenerateSpec | None, quantization: str, inv: Inventory | None = None,
                   backend: str = "hf") -> float | None:
    """Peak GiB of a generation child with `generate.quantization` = quantization on `backend` (None: the backend
    cannot load it). hf: k-bit via bitsandbytes, the rest in the compute dtype, the LoRA adapter unmerged (fp32; with
    trained tag rows, the merged embedding and head matrices each forward builds).
    vllm: a merged checkpoint; 8bit is vLLM's online fp8 (one byte per Linear weight); no 4-bit loading."""
    inv = inv or inventory(cfg)
    cb = compute_bytes(cfg)
    weights = served_weight_bytes(cfg, inv, quantization, backend)
    if weights is None:
        return None
    adapter = 0.0 if backend == "vllm" or cfg.method == "full" else inv.lora_params(cfg.lora.r) * 4.0
    if adapter and new_token_rows(cfg):  # PEFT's unmerged tag rows: every forward builds the merged embedding and head
        adapter += (1 if inv.tied else 2) * inv.vocab * inv.hidden * cb
    # sequences decoded at once: hf runs batch_size prompts x the widest decoding's beams/samples; vLLM fills its
    # share of the card with KV cache and needs room for one request's sequences at full length to start
    prompts = 1 if backend == "vllm" else (gen.batch_size if gen else 16)
    kv = prompts * widest_decoding(cfg) * (cfg.max_input_tokens + cfg.max_new_tokens) * kv_bytes_per_token(cfg)
    return ((weights + adapter + kv) * 1.1 + GIB) / GIB


def layer_elements(cfg: ModelConfig, inv: Inventory) -> int:
    """Activation elements one decoder layer keeps for backward, per token: the two norms' outputs, q, k, v, q and
    k after rotary embedding, attention's output, the residual after attention, gate, up, the activation and the
    product (the MLP's four), and each LoRA's rank-r intermediate."""
    arch, _ = architecture(cfg)
    h = inv.hidden
    kv = (arch.num_kv_heads or 0) * (arch.head_dim or 0) or h
    inter = arch.intermediate_size or 4 * h
    lora = 0 if cfg.method == "full" else cfg.lora.r * len(inv.lora_shapes) // max(1, arch.num_layers)
    return 7 * h + 3 * kv + 4 * inter + lora


def trained_head(cfg: ModelConfig, inv: Inventory) -> bool:
    """Whether the LM head's weight takes a gradient: full fine-tuning, or tag rows PEFT trains through its wrapper
    of the head (the head's own rows when untied, the embedding's when tied)."""
    return cfg.method == "full" or new_token_rows(cfg) > 0


def step_activations(cfg: ModelConfig, inv: Inventory, sequences: int, gpu: bool = True, loss: str = "causal",
                     amp: bool | None = None, checkpointing: bool | None = None) -> dict[str, float]:
    """Bytes one training step allocates on top of the weights and optimizer state, at its peak.

    `loss`: "causal" (transformers' loss on full logits: SFT, BRIO ranking) or "trl" (TRL's fused log-probs: DPO,
    GRPO). `amp` (16-bit autocast) and `checkpointing` default to what training does on this device: both only on a
    GPU, with precision bf16/fp16 and `train.gradient_checkpointing`."""
    arch, _ = architecture(cfg)
    amp = (gpu and compute_bytes(cfg, gpu) == 2) if amp is None else amp
    ckpt = (gpu and cfg.train.gradient_checkpointing) if checkpointing is None else checkpointing
    h, vocab, layers = inv.hidden, inv.vocab, arch.num_layers
    seq = cfg.max_input_tokens + cfg.max_new_tokens if cfg.family == "decoder" else cfg.max_new_tokens
    tokens = sequences * seq
    one_layer = tokens * layer_elements(cfg, inv) * (AMP_LAYER_BYTES if amp else 4.0)
    if cfg.family == "seq2seq":  # the encoder's layers over the source tokens as well
        one_layer += sequences * cfg.max_input_tokens * layer_elements(cfg, inv) * (AMP_LAYER_BYTES if amp else 4.0)
    saved = layers * tokens * h * 4.0 + one_layer if ckpt else layers * one_layer
    head_w = vocab * h * 4.0 if trained_head(cfg, inv) else 0.0  # the merged head (saved) and its fp32 gradient
    if loss == "trl":
        cb = 2 if amp else 4
        tile = min(tokens, TRL_TOKEN_TILE) * TRL_VOCAB_TILE * cb
        fold = 0.0 if gpu else 6.0 * min(tokens, TRL_TOKEN_TILE) * min(vocab, TRL_VOCAB_TILE) * 4  # torch, not Triton
        head = tile + fold + tokens * h * 4.0 + 2 * head_w
    else:  # at the backward peak: log-softmax and the gradients of it and of the logits, all fp32 (the logits, and
        # under autocast their fp32 copy, are freed once the loss is computed: the Trainer drops the model's output)
        head = tokens * vocab * 12.0 + 2 * head_w
    # with checkpointing, the layers are recomputed one at a time after the head's backward has freed its tensors
    peak = (layers * tokens * h * 4.0 + max(head, one_layer)) if ckpt else saved + head
    return {"layers": saved, "head": head, "tokens": tokens, "peak": peak}


def step_peak_bytes(cfg: ModelConfig, inv: Inventory | None = None, gpu: bool = True, stage: str = "train",
                    amp: bool | None = None, checkpointing: bool | None = None) -> dict[str, float]:
    """Live tensor bytes at the peak of one training step (`stage` train or align): weights, trainable parameters,
    their gradients, the optimizer's state and `step_activations`; for align also TRL's frozen `ref` adapter copy.
    What the GPU plan multiplies by the allocator's slack and adds the CUDA context to."""
    inv = inv or inventory(cfg)
    tensors = train_tensors(cfg, inv, gpu)
    if stage == "align" and cfg.align.method != "none":
        a = cfg.align
        sequences, loss = align_sequences(cfg), ("causal" if a.method == "rank" else "trl")
        ref = 0.0 if cfg.method == "full" or a.method == "rank" else tensors["trainable"]
    else:
        sequences, loss, ref = cfg.train.batch_size, "causal", 0.0
    act = step_activations(cfg, inv, sequences, gpu, loss, amp, checkpointing)
    static = tensors["weights"] + tensors["trainable"] + tensors["gradients"] + tensors["optimizer"] + ref
    return {**tensors, "ref": ref, "activations": act["peak"], "static": static, "peak": static + act["peak"]}


def estimate_gpu_gib(cfg: ModelConfig, gen: GenerateSpec | None = None, inv: Inventory | None = None) -> dict[str, float]:
    """Peak GiB of the training child, of the generation child and (with `align`) of the align child. Planning
    numbers, not promises: `step_peak_bytes` x1.15 for the allocator + ~1 GiB of CUDA context."""
    inv = inv or inventory(cfg)
    train = step_peak_bytes(cfg, inv)
    quant = gen.quantization if gen else "none"
    backend = "vllm" if gen and gen.backend in ("vllm", "auto") else "hf"
    generate = generation_gib(cfg, gen, quant, inv, backend) or generation_gib(cfg, gen, quant, inv, "hf")
    out = {"weights": (train["weights"] + train["trainable"]) / GIB,
           "grads_and_optimizer": (train["gradients"] + train["optimizer"]) / GIB,
           "activations": train["activations"] / GIB, "train": (train["peak"] * 1.15 + GIB) / GIB,
           "generate": generate}
    if cfg.align.method != "none":
        align = step_peak_bytes(cfg, inv, stage="align")
        sampled = 0.0
        if cfg.align.method == "grpo":  # the group's KV cache while TRL samples it with transformers
            sampled = (cfg.max_input_tokens + cfg.max_new_tokens) * kv_bytes_per_token(cfg) * align_sequences(cfg)
        out["align"] = ((align["peak"] + sampled) * 1.15 + GIB) / GIB
    out["total"] = max(v for k, v in out.items() if k in ("train", "generate", "align"))
    return out


def align_sequences(cfg: ModelConfig) -> int:
    """Sequences one alignment step trains on: 2 per DPO pair, the group per GRPO prompt, samples + reference for
    rank; times the dialogues per step."""
    a = cfg.align
    return a.batch_size * {"dpo": 2, "grpo": a.samples, "rank": a.samples + 1}.get(a.method, 0)
