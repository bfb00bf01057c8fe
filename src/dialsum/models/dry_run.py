"""The text of `dialsum train --dry-run`: per model what would run, and whether each stage fits a 24 GB card, an
80 GB card and the GPU this machine shows, for training and for every `generate.quantization` option."""
from __future__ import annotations

from dialsum.config import GenerateSpec, ModelConfig
from dialsum.hardware import visible_gpu_gib
from dialsum.models.inventory import architecture, inventory
from dialsum.models.memory import (CARDS_GIB, QUANT_OPTIONS, align_sequences, estimate_gpu_gib, generation_gib)


def fits(need: float | None, card_gib: float | None, reserve: float = 1.0) -> str:
    if need is None:
        return "n/a"
    if card_gib is None:
        return "-"
    return "yes" if need <= card_gib * reserve else "no"


def generation_table(cfg: ModelConfig, gen: GenerateSpec, visible: float | None, inv=None) -> list[str]:
    """One row per generate.quantization option and backend: GiB, and fits 24 GB / 80 GB / visible. vLLM must fit in
    its `gpu_memory_utilization` share of the card (it reserves that share, then fills it with KV cache)."""
    inv = inv or inventory(cfg)
    backends = ["hf"] + (["vllm"] if cfg.family == "decoder" else [])
    rows = [f"    generation, per generate.quantization (batch {gen.batch_size}; vLLM within "
            f"gpu_memory_utilization {gen.gpu_memory_utilization:g} of the card; visible GPU: "
            f"{f'{visible:.0f} GiB' if visible else 'none'}):",
            "      backend quant   GiB    24 GB  80 GB  visible"]
    for backend in backends:
        reserve = gen.gpu_memory_utilization if backend == "vllm" else 1.0
        for q in QUANT_OPTIONS:
            need = generation_gib(cfg, gen, q, inv, backend)
            cells = [fits(need, CARDS_GIB[c], reserve) for c in CARDS_GIB] + [fits(need, visible, reserve)]
            shown = f"{need:6.1f}" if need is not None else "   n/a"
            note = " (vLLM online fp8)" if backend == "vllm" and q == "8bit" else (
                " (vLLM has no 4-bit loading)" if need is None else "")
            chosen = " <- configured" if q == gen.quantization and backend == _backend(gen) else ""
            rows.append(f"      {backend:<7} {q:<6} {shown}  {cells[0]:<5}  {cells[1]:<5}  {cells[2]:<7}{note}{chosen}")
    return rows


def _backend(gen: GenerateSpec) -> str:
    return "vllm" if gen.backend in ("vllm", "auto") else "hf"


def describe_plan(cfg: ModelConfig, gen: GenerateSpec | None = None) -> str:
    gen = gen or GenerateSpec()
    t = cfg.train
    inv = inventory(cfg)  # one meta-device instantiation for the whole plan
    est = estimate_gpu_gib(cfg, gen, inv)
    arch, where = architecture(cfg)
    visible = visible_gpu_gib()
    source = cfg.path or "tiny local model (built on demand)"
    train_fit = " ".join(f"{c}: {fits(est['train'], g)}" for c, g in CARDS_GIB.items())
    lines = [
        f"{cfg.name}: {source} [{cfg.model_type}, {cfg.params_billion or '<0.001'}B params, vocab "
        f"{arch.vocab_size}, hidden {arch.hidden_size}, {arch.num_layers} layers ({where}); "
        f"{inv.total / 1e9:.3f}B parameters ({inv.source})]",
        f"  family={cfg.family} finetune={cfg.method} format={cfg.prompt_format} quant={cfg.quantization} "
        f"precision={cfg.precision} "
        f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} on {','.join(cfg.target_modules)}",
        f"  lr={t.learning_rate} epochs={t.epochs} batch={t.batch_size}x{t.grad_accum} warmup={t.warmup_ratio} "
        f"augment={t.augment} max_input={cfg.max_input_tokens} max_new={cfg.max_new_tokens}",
        f"  decodings: {', '.join(d.name for d in cfg.decodings)}",
        f"  est. GPU memory: {est['total']:.1f} GiB peak over its stages, each its own child process:",
        f"    train:{cfg.name}    {est['train']:.1f} GiB (weights {est['weights']:.1f}, grads+optim "
        f"{est['grads_and_optimizer']:.2f}, activations+logits {est['activations']:.1f}) fits {train_fit} "
        f"visible: {fits(est['train'], visible)}",
        f"    generate:{cfg.name} {est['generate']:.1f} GiB ({_backend(gen)}, quantization {gen.quantization})",
    ]
    if est["train"] > min(CARDS_GIB.values()):
        lines.append(_smaller_steps(cfg, gen, inv, est["train"]))
    if cfg.align.method != "none":
        lines.append(_align_line(cfg, est))
    return "\n".join(lines + generation_table(cfg, gen, visible, inv))


def _smaller_steps(cfg: ModelConfig, gen: GenerateSpec, inv, need: float) -> str:
    """What to change when training does not fit the smaller card: the same rows per optimizer step in smaller
    micro-batches (batch_size halved, grad_accum doubled), else shorter inputs, else a larger card."""
    card, gib = min(CARDS_GIB.items(), key=lambda kv: kv[1])
    t = cfg.train
    batch, accum = t.batch_size, t.grad_accum
    while batch > 1:
        batch, accum = (batch + 1) // 2, accum * 2
        trial = cfg.model_copy(update={"train": t.model_copy(update={"batch_size": batch, "grad_accum": accum})})
        got = estimate_gpu_gib(trial, gen, inv)["train"]
        if got <= gib:
            return (f"    does not fit {card} ({need:.1f} GiB): train.batch_size {batch} and train.grad_accum {accum} "
                    f"(the same {t.batch_size * t.grad_accum} rows a step) plan {got:.1f} GiB")
    one = cfg.model_copy(update={"train": t.model_copy(update={"batch_size": 1, "grad_accum": t.batch_size * t.grad_accum})})
    for cut in (0.75, 0.5):
        trial = one.model_copy(update={"max_input_tokens": int(cfg.max_input_tokens * cut)})
        got = estimate_gpu_gib(trial, gen, inv)["train"]
        if got <= gib:
            return (f"    does not fit {card} ({need:.1f} GiB): train.batch_size 1, train.grad_accum "
                    f"{t.batch_size * t.grad_accum} and max_input_tokens {trial.max_input_tokens} plan {got:.1f} GiB "
                    f"(check `dialsum preview --lengths` for what the shorter input cuts)")
    return f"    does not fit {card} ({need:.1f} GiB) even at batch 1 with shorter inputs: use a larger card"


def _align_line(cfg: ModelConfig, est: dict) -> str:
    a = cfg.align
    sampled = a.rows * a.samples if a.method in ("dpo", "rank") else a.steps * a.batch_size * a.samples
    return (f"    align:{cfg.name}    {est['align']:.1f} GiB ({a.method}: {align_sequences(cfg)} sequences per step "
            f"x {a.steps} steps; {sampled} sampled summaries"
            f"{' (prefs stage, batched generation)' if a.method != 'grpo' else ' (generated inside training)'}; "
            f"time ~ {a.steps * align_sequences(cfg)} training sequences, vs SFT's epochs x train rows)")


def time_lines(model: dict) -> list[str]:
    """One model's hours per stage (dialsum.models.time_plan.plan_model) as the dry run prints them."""
    lines = [f"  est. time ({model['tokens']}):"]
    for stage, s in model["stages"].items():
        memory = "" if s.get("fits_memory", True) else "  [does NOT fit this card's memory: see the memory plan]"
        lines.append(f"    {stage:<9} {duration(s['hours']):>9}  {s['detail']}{memory}")
    lines.append(f"    {'total':<9} {duration(model['hours']):>9}")
    return lines


def duration(hours: float) -> str:
    return f"{hours:.2f} h" if hours >= 0.01 else f"{hours * 3600:.1f} s"


def time_summary(plan: dict) -> list[str]:
    """The card, its assumptions and the run's total (and whether it fits --hours)."""
    c, u = plan["card"], plan["utilisation"]
    how = ("measured by the GPU rehearsal " + plan["utilisation_source"]) if plan["utilisation_source"] != "assumed" \
        else "assumed"
    lines = [f"time plan on {c['label']} ({c['bf16_tflops']:g} dense bf16 TFLOPS, {c['bandwidth_gbs']:g} GB/s); "
             f"utilisation {how}: " + ", ".join(f"{k} {v:.2f}" for k, v in u.items())
             + " (train modes and prefill: of the FLOPs peak; decode: of the bandwidth)",
             "  rows: " + ", ".join(f"{k} {v}" for k, v in plan["rows"].items())
             + "; train = the configured steps (early stopping can only shorten it), models one after another",
             f"  run total: {duration(plan['hours'])} on {plan['gpu']}"]
    if plan["budget_hours"] is not None:
        verdict = "fits" if plan["fits"] else "does NOT fit"
        lines[-1] += f"; {verdict} --hours {plan['budget_hours']:g}"
    return lines
