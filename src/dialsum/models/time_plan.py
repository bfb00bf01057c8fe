"""The time plan of `dialsum train --dry-run --gpu CARD [--hours H]`: hours per model and stage on a named card.

Compute-bound work (training, prefill) costs FLOPs per token counted from the parameter inventory: 2 per matmul
weight forward; backward through a frozen base takes the input gradients only (2 per weight), trained weights (the
LoRA matrices, or every weight under full fine-tuning) take their weight gradients too (2 more); gradient
checkpointing repeats the forward; causal attention adds 2 x layers x width x context forward and twice that
backward. Seconds = FLOPs / (the card's dense bf16 peak x an assumed utilisation of the mode). Each decode step of
generation is bound by the larger of its bytes (the weights once per step, every running sequence's KV cache) over
the card's bandwidth x utilisation, and its FLOPs over compute. A GPU rehearsal that ran on the card (its
rehearsal.json, `throughput`) replaces the assumed utilisation by the measured one. Token counts come from each
model's tokenizer where it is here, else from characters x `tokens_per_char`. Early stopping can only shorten what
is planned: the plan is the configured budget of steps.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from dialsum.config import DecodingSpec, FinalSpec, GenerateSpec, ModelConfig, RunConfig
from dialsum.errors import DialsumError
from dialsum.io.data import Dialogue
from dialsum.models.inventory import Inventory, architecture, inventory
from dialsum.models.memory import (align_sequences, estimate_gpu_gib, kv_bytes_per_token,
                                   served_weight_bytes)

# assumed share of the card's dense bf16 peak (train modes, prefill) or of its memory bandwidth (decode)
UTILISATION = {"qlora": 0.30, "lora": 0.40, "full": 0.40, "prefill": 0.50, "decode": 0.60}
DEFAULT_TOKENS_PER_CHAR = 1.0  # without a tokenizer or a model's `tokens_per_char`: stated wherever it is used
AUGMENT_COPIES = {"none": 1, "mixed": 5}  # train.augment: mixed = once per instruction template (prompts.py)
USABLE = 0.983  # what CUDA reports of a card's labelled memory (23.6 of 24 GB, 79.1 of 80 GB)


@dataclass(frozen=True)
class Card:
    key: str
    label: str
    tflops: float  # dense bf16 (fp16 on a T4) tensor-core peak with fp32 accumulation, as PyTorch runs it
    bandwidth_gbs: float
    memory_gib: float
    utilisation: dict = field(default_factory=lambda: dict(UTILISATION))
    measured: str | None = None  # the rehearsal.json the utilisation came from

    @property
    def vllm_max_seqs(self) -> int:
        """vLLM's default max_num_seqs for the LLM class: 1024 on cards of >= 70 GiB but A100s, else 256."""
        return 1024 if self.memory_gib >= 70 and "a100" not in self.key else 256


CARDS = {c.key: c for c in (
    Card("rtx3090", "RTX 3090 24 GB", 35.6, 936, 24),
    Card("a100-40", "A100 40 GB SXM", 312, 1555, 40),
    Card("a100-80", "A100 80 GB SXM", 312, 2039, 80),
    Card("h100", "H100 80 GB SXM", 989, 3350, 80),
    Card("l4", "L4 24 GB", 121, 300, 24),
    Card("t4", "T4 16 GB (fp16)", 65, 320, 16),
)}


def card_of_name(name: str | None) -> str | None:
    """The card key of a device name as CUDA or nvidia-smi gives it ("NVIDIA A100-SXM4-80GB" -> a100-80)."""
    n = (name or "").lower().replace(" ", "")
    if "h100" in n or "h200" in n:
        return "h100"
    if "a100" in n:
        return "a100-80" if "80g" in n else "a100-40"
    for key, words in (("rtx3090", ("3090",)), ("l4", ("l4",)), ("t4", ("t4",))):
        if any(w in n for w in words):
            return key
    return None


def card_for(key: str | None, rehearsal: Path | None = None) -> Card:
    """The named card (default: the visible GPU's, else an RTX 3090), with a rehearsal's measured utilisation when
    that rehearsal ran on this card."""
    if key is None:
        from dialsum.hardware import visible_gpu_name

        key = card_of_name(visible_gpu_name()) or "rtx3090"
    card = CARDS[key]
    if rehearsal is None:
        return card
    try:
        data = json.loads(Path(rehearsal).read_text(encoding="utf-8"))
        got = data["throughput"]
        measured_key, util = got["card"], {k: float(v) for k, v in got["utilisation"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DialsumError(f"{rehearsal}: not a GPU rehearsal's rehearsal.json with a `throughput` section "
                           f"({type(e).__name__}: {e})") from None
    if measured_key != card.key:
        return card  # measured on another card: the assumption stays (the plan says which)
    bad = sorted(k for k, v in util.items() if k not in UTILISATION or not 0 < v <= 1)
    if bad:
        raise DialsumError(f"{rehearsal}: throughput.utilisation has unknown modes or values outside (0, 1]: {bad}")
    return replace(card, utilisation={**card.utilisation, **util},
                   measured=f"{rehearsal} ({got.get('device', card.label)})")


# ------------------------------------------------------------------------------------------------ FLOPs per token
def train_flops_per_token(frozen: int, trained: int, layers: int, width: int, context: float,
                          checkpointing: bool) -> float:
    """One training token: forward 2(F+T) + A, backward 2(F+T) (input gradients) + 2T (weight gradients of the
    trained weights) + 2A, the forward once more under gradient checkpointing; A = 2 x layers x width x context
    (causal attention's QK^T and AV, each 2 x width per key, over `context` keys on average)."""
    attention = 2.0 * layers * width * context
    forward = 2.0 * (frozen + trained) + attention
    backward = 2.0 * (frozen + trained) + 2.0 * trained + 2.0 * attention
    return forward + backward + (forward if checkpointing else 0.0)


def forward_flops_per_token(weights: int, layers: int, width: int, context: float) -> float:
    return 2.0 * weights + 2.0 * layers * width * context


@dataclass(frozen=True)
class Shape:
    """What the FLOPs and bytes of one model need: matmul weights on the input (encoder) and output (decoder) side,
    trained weights, layers, attention width, KV bytes per token and the weight bytes one decode step reads."""
    input_weights: int
    output_weights: int
    trained: int
    layers: int
    width: int
    kv_per_token: float
    weight_bytes: float
    full: bool


def shape_of(cfg: ModelConfig, gen: GenerateSpec, inv: Inventory | None = None) -> Shape:
    """Matmul weights = every Linear (what k-bit loading quantises) plus the LM head (vocab x hidden, tied or not).
    A seq2seq model's source tokens pass its encoder, its target tokens its decoder: half the Linear weights each."""
    inv = inv or inventory(cfg)
    arch, _ = architecture(cfg)
    head = inv.vocab * inv.hidden
    width = inv.hidden  # attention width (heads x head_dim) of every configured architecture
    if cfg.family == "seq2seq":
        inp, out = inv.quantizable // 2, inv.quantizable - inv.quantizable // 2 + head
    else:
        inp, out = inv.quantizable + head, inv.quantizable + head
    trained = inv.quantizable + head if cfg.method == "full" else inv.lora_params(cfg.lora.r)
    backend = "vllm" if cfg.family == "decoder" and gen.backend in ("vllm", "auto") else "hf"
    wbytes = served_weight_bytes(cfg, inv, gen.quantization, backend) or served_weight_bytes(cfg, inv, gen.quantization)
    return Shape(inp, out, trained, arch.num_layers, width, kv_bytes_per_token(cfg), wbytes, cfg.method == "full")


# ------------------------------------------------------------------------------------------------ token counts
@dataclass
class Lengths:
    """Per row, in tokens, already cut to max_input_tokens / max_new_tokens: what the stages process."""
    inputs: dict[str, list[int]]   # split -> input tokens per row
    targets: dict[str, list[int]]  # split -> reference tokens per row (train, dev)
    source: str


def measure_lengths(cfg: ModelConfig, splits: dict[str, list[Dialogue]], rows: dict[str, int] | None = None) -> Lengths:
    """Token counts with the model's own tokenizer when it is here (a local folder, a cached hub id, the tiny
    model's), else characters x tokens_per_char; `rows` resamples a split to that many rows (the competition's
    12,457 train rows planned from a sample of them)."""
    counted = _with_tokenizer(cfg, splits)
    if counted is None:
        tpc = cfg.tokens_per_char or DEFAULT_TOKENS_PER_CHAR
        overhead = round(len(cfg.instruction + (cfg.system_prompt if cfg.prompt_format == "chat" else "")) * tpc) + 8
        counted = ({s: [round(len(d.dialogue) * tpc) + overhead for d in r] for s, r in splits.items()},
                   {s: [round(len(d.summary) * tpc) + 1 for d in r if d.summary] for s, r in splits.items()},
                   f"characters x {tpc:g} tokens/char ("
                   + ("model config tokens_per_char" if cfg.tokens_per_char else "assumed: no tokenizer here") + ")")
    ins, outs, source = counted
    ins = {s: [min(n, cfg.max_input_tokens) for n in v] for s, v in ins.items()}
    outs = {s: [min(n, cfg.max_new_tokens) for n in v] for s, v in outs.items() if v}
    for split, n in (rows or {}).items():
        if ins.get(split):
            ins[split] = [ins[split][i % len(ins[split])] for i in range(n)]
        if outs.get(split):
            outs[split] = [outs[split][i % len(outs[split])] for i in range(n)]
    return Lengths(ins, outs, source)


def _with_tokenizer(cfg: ModelConfig, splits: dict[str, list[Dialogue]]):
    from dialsum.models.preview import from_path, token_lengths, tokenizer_for

    try:
        if cfg.path is None:
            texts = [d.dialogue for d in splits.get("train", [])] + [d.summary for d in splits.get("train", [])]
            mt = tokenizer_for(cfg, None, texts)
            where = "the tiny model's tokenizer"
        else:
            mt = from_path(cfg.path, cfg, cfg.revision)
            where = f"{cfg.path}'s tokenizer"
    except (DialsumError, OSError, ValueError):
        return None
    ins, outs = {}, {}
    for split, rows in splits.items():
        if rows:
            ins[split], o = token_lengths(mt, cfg, rows)
            outs[split] = o or []
    return ins, outs, where


# ------------------------------------------------------------------------------------------------ seconds per stage
def padded_tokens(lengths: list[int], batch: int, seed: int = 0) -> int:
    """Tokens a pass over the rows computes when each micro-batch is padded to its longest row (the Trainer's
    random order, no length grouping): a seeded shuffle, chunked."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    return sum(max(order[i:i + batch]) * len(order[i:i + batch]) for i in range(0, len(order), batch))


def train_seconds(cfg: ModelConfig, shape: Shape, card: Card, ins: list[int], outs: list[int],
                  copies: int = 1, steps: int | None = None, sequences_per_step: int | None = None) -> dict:
    """Seconds of SFT (or, with `steps` and `sequences_per_step`, of alignment steps) over rows of these lengths."""
    t = cfg.train
    per_step = sequences_per_step or t.batch_size * t.grad_accum * t.nproc
    rows = len(ins) * copies
    if steps is None:
        steps = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * rows / per_step)
    ckpt = t.gradient_checkpointing
    if cfg.family == "decoder":
        seqs = [i + o for i, o in zip(ins, outs)]
        per_pass = padded_tokens(seqs, t.batch_size, t.seed)
        tokens = per_pass * steps * per_step / len(seqs)
        context = sum(seqs) / len(seqs) / 2
        flops = tokens * train_flops_per_token(0 if shape.full else shape.output_weights, shape.trained,
                                               shape.layers, shape.width, context, ckpt)
    else:  # encoder over the source, decoder over the target (its self-attention and the cross-attention)
        enc = padded_tokens(ins, t.batch_size, t.seed) * steps * per_step / len(ins)
        dec = padded_tokens(outs, t.batch_size, t.seed) * steps * per_step / len(outs)
        share = shape.trained / 2
        frozen_in = 0 if shape.full else shape.input_weights
        frozen_out = 0 if shape.full else shape.output_weights
        flops = (enc * train_flops_per_token(frozen_in, int(share), shape.layers, shape.width, sum(ins) / len(ins) / 2,
                                             ckpt)
                 + dec * train_flops_per_token(frozen_out, int(share), shape.layers, shape.width,
                                               sum(outs) / len(outs) / 2 + sum(ins) / len(ins), ckpt))
        tokens = enc + dec
    mode = cfg.method
    seconds = flops / (card.tflops * 1e12 * card.utilisation[mode])
    return {"seconds": seconds, "steps": steps, "tokens": tokens, "flops": flops, "mode": mode}


def generate_seconds(cfg: ModelConfig, shape: Shape, card: Card, gen: GenerateSpec, backend: str,
                     prompts: list[int], out_len: float, dec: DecodingSpec) -> dict:
    """Prefill (compute-bound) plus decode steps (each the larger of bytes / bandwidth and FLOPs / compute).
    Sequences per dialogue: beams or samples. Running at once: transformers, batch_size dialogues x those; vLLM,
    its max_num_seqs or what its KV-cache share of the card holds at full length, whichever is smaller."""
    width = dec.num_beams if dec.strategy == "beam" else dec.n
    steps = min(dec.max_new_tokens or cfg.max_new_tokens, max(1, round(out_len)))
    seq_len = cfg.max_input_tokens + cfg.max_new_tokens
    if backend == "vllm":
        free = card.memory_gib * 2**30 * gen.gpu_memory_utilization - shape.weight_bytes
        running = max(width, min(card.vllm_max_seqs, int(free / (shape.kv_per_token * seq_len)))) if free > 0 else 0
        prefill_copies = 1  # the prompt's KV cache is shared by its samples (prefix caching)
    else:
        running = gen.batch_size * width
        prefill_copies = width
    if running == 0:
        return {"seconds": math.inf, "sequences": len(prompts) * width, "note": "weights do not fit the card"}
    mean_prompt = sum(prompts) / len(prompts)
    flops_pre = sum(prompts) * prefill_copies * forward_flops_per_token(shape.input_weights, shape.layers,
                                                                        shape.width, mean_prompt / 2)
    seconds = flops_pre / (card.tflops * 1e12 * card.utilisation["prefill"])
    total = len(prompts) * width
    for batch in [running] * (total // running) + ([total % running] if total % running else []):
        context = mean_prompt + steps / 2
        step_bytes = shape.weight_bytes + batch * context * shape.kv_per_token
        step_flops = batch * forward_flops_per_token(shape.output_weights, shape.layers, shape.width, context)
        seconds += steps * max(step_bytes / (card.bandwidth_gbs * 1e9 * card.utilisation["decode"]),
                               step_flops / (card.tflops * 1e12 * card.utilisation["prefill"]))
    return {"seconds": seconds, "sequences": total, "running": running}


def plan_model(cfg: ModelConfig, gen: GenerateSpec, card: Card, lengths: Lengths, select_ratio: float,
               backend: str, final: FinalSpec | None = None) -> dict:
    """Hours of each stage of one model: train (the configured steps), devscore (the evaluations inside training:
    eval_subset dev-select rows greedy every eval_steps), prefs and align (with `align`), generate (every decoding
    over the generated splits), and with `final.refit` the refit (train + dev, and the pseudo-labelled test and the
    dev-report probe with `final.pseudo_label`, for the configured steps scaled by rows: early stopping in the train
    stage can only shorten it) with its generation."""
    shape = shape_of(cfg, gen)
    t = cfg.train
    train_in, train_out = lengths.inputs["train"], lengths.targets["train"]
    out_len = sum(lengths.targets.get("dev") or train_out) / len(lengths.targets.get("dev") or train_out)
    greedy = DecodingSpec(name="greedy")
    stages = {}
    tr = train_seconds(cfg, shape, card, train_in, train_out, AUGMENT_COPIES[t.augment])
    stages["train"] = {**tr, "detail": f"{tr['steps']} steps, {tr['tokens'] / 1e6:.1f}M tokens ({tr['mode']})"}
    dev = lengths.inputs.get("dev") or train_in
    subset = dev[:min(t.eval_subset, max(1, round(len(dev) * select_ratio)))]
    evals = tr["steps"] // t.eval_steps + 1
    one = generate_seconds(cfg, shape, card, gen, "hf", subset, out_len, greedy)
    stages["devscore"] = {"seconds": evals * one["seconds"],
                          "detail": f"{evals} evaluations x {len(subset)} dev-select rows, greedy"}
    a = cfg.align
    if a.method != "none":
        rows = train_in[:a.rows]
        if a.method in ("dpo", "rank"):
            sample = DecodingSpec(name="s", strategy="sample", n=a.samples)
            p = generate_seconds(cfg, shape, card, gen, backend, rows, out_len, sample)
            stages["prefs"] = {"seconds": p["seconds"], "detail": f"{a.rows} rows x {a.samples} samples"}
        refs = 0 if a.method == "rank" or cfg.method == "full" or a.beta == 0 else 1
        seqs = align_sequences(cfg) * a.grad_accum
        al = train_seconds(cfg, shape, card, rows, train_out[:a.rows], steps=a.steps, sequences_per_step=seqs)
        seconds = al["seconds"] * (1 + refs / 3)  # the reference model's forward: a third of a training pass
        if a.method == "grpo":  # its groups are sampled with transformers inside training
            seconds += generate_seconds(cfg, shape, card, gen, "hf", rows[:a.steps * a.batch_size], out_len,
                                        DecodingSpec(name="g", strategy="sample", n=a.samples))["seconds"]
        keep = 2 * generate_seconds(cfg, shape, card, gen, backend, dev[:a.eval_rows or len(dev)], out_len,
                                    greedy)["seconds"]  # SFT's and the aligned weights' greedy dev scores
        stages["align"] = {"seconds": seconds + keep, "detail": f"{a.steps} steps x {seqs} sequences ({a.method}), "
                                                                f"keep decision on dev"}
    gen_in = [n for s in gen.splits for n in lengths.inputs.get(s, [])]
    parts = [generate_seconds(cfg, shape, card, gen, backend, gen_in, out_len, d) for d in cfg.decodings]
    stages["generate"] = {"seconds": sum(p["seconds"] for p in parts),
                          "detail": f"{len(cfg.decodings)} decodings over {len(gen_in)} rows ({backend}, "
                                    f"{sum(p['sequences'] for p in parts)} sequences)"}
    if final is not None and final.refit:
        stages["refit"] = refit_seconds(cfg, shape, card, gen, backend, lengths, tr["steps"], out_len, final,
                                        select_ratio)
    for s in stages.values():
        s["hours"] = s["seconds"] / 3600
    return {"name": cfg.name, "stages": stages, "hours": sum(s["hours"] for s in stages.values()),
            "tokens": lengths.source}


def refit_seconds(cfg: ModelConfig, shape: Shape, card: Card, gen: GenerateSpec, backend: str, lengths: Lengths,
                  steps: int, out_len: float, final: FinalSpec, select_ratio: float) -> dict:
    """The endgame's stages of one model: its refit(s) and their candidates (test; the probe's on dev)."""
    train_in, train_out = lengths.inputs["train"], lengths.targets["train"]
    dev_in, dev_out = lengths.inputs.get("dev", []), lengths.targets.get("dev", [])
    test_in = lengths.inputs.get("test", [])
    runs = [(train_in + dev_in + (test_in if final.pseudo_label else []),
             train_out + dev_out + ([round(out_len)] * len(test_in) if final.pseudo_label else []), test_in)]
    if final.pseudo_label:  # the probe: train + dev-report's dialogues, its candidates on dev
        report = dev_in[round(len(dev_in) * select_ratio):]
        runs.append((train_in + report, train_out + [round(out_len)] * len(report), dev_in))
    seconds = 0.0
    for ins, outs, generated in runs:
        scaled = max(1, math.ceil(steps * len(ins) / len(train_in)))
        seconds += train_seconds(cfg, shape, card, ins, outs, steps=scaled)["seconds"]
        seconds += sum(generate_seconds(cfg, shape, card, gen, backend, generated, out_len, d)["seconds"]
                       for d in cfg.decodings)
    what = "train + dev" + (" + pseudo-labelled test, and the dev-report probe" if final.pseudo_label else "")
    return {"seconds": seconds, "detail": f"final refit on {what} (steps scaled from {steps}), test candidates"}


def plan_run(cfg: RunConfig, models: list[ModelConfig], splits: dict[str, list[Dialogue]], card: Card,
             rows: dict[str, int] | None = None, hours: float | None = None) -> dict:
    """Every model's plan on one card, models one after another (as `dialsum run` trains them on one GPU)."""
    gen = cfg.generate
    out = []
    for m in models:  # planned for a GPU machine: `auto` is vLLM there (decoders, not at 4 bits), whatever this one has
        vllm = m.family == "decoder" and gen.backend in ("vllm", "auto") and gen.quantization != "4bit"
        one = plan_model(m, gen, card, measure_lengths(m, splits, rows), cfg.dev_split.select_ratio,
                         "vllm" if vllm else "hf", cfg.final)
        memory = estimate_gpu_gib(m, gen)
        for stage in ("train", "generate", "align"):  # the memory plan's verdict for this card, beside the hours
            if stage in one["stages"]:
                one["stages"][stage]["fits_memory"] = memory[stage] <= card.memory_gib * USABLE
        out.append(one)
    total = sum(m["hours"] for m in out)
    return {"gpu": card.key, "card": {"label": card.label, "bf16_tflops": card.tflops,
                                      "bandwidth_gbs": card.bandwidth_gbs, "memory_gib": card.memory_gib},
            "utilisation": card.utilisation, "utilisation_source": card.measured or "assumed",
            "rows": {s: len(v) for s, v in splits.items()} | (rows or {}),
            "models": out, "hours": total, "budget_hours": hours, "fits": None if hours is None else total <= hours}
