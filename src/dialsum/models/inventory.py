"""A model's parameters, counted without reading a weight: what the memory plan multiplies by bytes.

Exact when the architecture is known as a transformers config (the tiny spec, or a cached config.json): the model is
instantiated on the `meta` device, so every tensor has its shape and none has storage, and each Linear is classed the
way bitsandbytes loading classes it (quantised, except the LM head). Otherwise estimated from `params_billion` and
the model config's `arch` numbers (vocabulary x width for embeddings and an untied head; the rest quantisable).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dialsum.config import ArchSpec, ModelConfig


@dataclass(frozen=True)
class Inventory:
    quantizable: int  # weights of Linear layers that k-bit loading quantises (every Linear but the LM head)
    quantizable_rows: int  # their output rows (8-bit keeps one fp32 scale per row)
    quantizable_modules: int  # how many such Linear layers (4-bit keeps small code tables per layer)
    plain: int  # everything else: embeddings, an untied LM head, norms, biases, position tables
    hidden: int
    vocab: int
    tied: bool
    lora_shapes: list[tuple[int, int]] = field(default_factory=list)  # (in, out) of each LoRA-targeted Linear
    source: str = ""

    @property
    def total(self) -> int:
        return self.quantizable + self.plain

    def lora_params(self, r: int) -> int:
        return sum(r * (i + o) for i, o in self.lora_shapes)


def inventory(cfg: ModelConfig) -> Inventory:
    conf = transformers_config(cfg)
    if conf is not None:
        return _from_meta(cfg, conf)
    return _from_numbers(cfg)


def transformers_config(cfg: ModelConfig):
    """The model's transformers config when it is known here: the tiny spec's, or a cached config.json."""
    if cfg.tiny is not None:
        from dialsum.models.special_tokens import TAGS
        from dialsum.models.tiny import tiny_config

        specials = 4 + (len(TAGS) if cfg.tiny.with_tags else 0)  # the BPE's own specials, the tags it was given
        return tiny_config(cfg.tiny, cfg.tiny.vocab_size + specials, cfg.family)
    data = cached_config(cfg.path)
    if not data or "model_type" not in data:
        return None
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(**data)
    except Exception:  # noqa: BLE001 - a model type this transformers does not know: estimate from numbers instead
        return None


def cached_config(path: str | None) -> dict | None:
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


def _from_meta(cfg: ModelConfig, conf) -> Inventory:
    import torch

    from dialsum.models.loading import model_class

    with torch.device("meta"):
        model = model_class(cfg).from_config(conf)
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    tied = head is not None and head.weight is emb.weight
    quant = rows = modules = 0
    shapes = []
    targets = set(cfg.target_modules)
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        quant += module.weight.numel()
        rows += module.out_features
        modules += 1
        if name.rsplit(".", 1)[-1] in targets:
            shapes.append((module.in_features, module.out_features))
    total = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    text = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    hidden = getattr(text, "hidden_size", None) or getattr(text, "d_model")
    where = "tiny spec" if cfg.tiny is not None else "cached config.json"
    return Inventory(quantizable=quant, quantizable_rows=rows, quantizable_modules=modules, plain=total - quant,
                     hidden=hidden, vocab=emb.weight.shape[0], tied=tied, lora_shapes=shapes,
                     source=f"{where}, counted on meta")


def architecture(cfg: ModelConfig) -> tuple[ArchSpec, str]:
    """(numbers, where they came from)."""
    if cfg.tiny is not None:
        t = cfg.tiny
        return ArchSpec(vocab_size=t.vocab_size + 32, hidden_size=t.hidden_size, num_layers=t.num_hidden_layers,
                        num_kv_heads=t.num_key_value_heads, head_dim=t.hidden_size // t.num_attention_heads,
                        intermediate_size=t.intermediate_size, tie_word_embeddings=t.tie_word_embeddings), "tiny spec"
    cached = cached_config(cfg.path)
    if cached:
        c = cached
        hidden = c.get("hidden_size") or c.get("n_embd") or c.get("d_model")
        layers = c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers")
        heads = c.get("num_attention_heads") or c.get("n_head")
        if c.get("vocab_size") and hidden and layers:
            return ArchSpec(vocab_size=c["vocab_size"], hidden_size=hidden, num_layers=layers,
                            num_kv_heads=c.get("num_key_value_heads") or heads,
                            head_dim=c.get("head_dim") or (hidden // heads if heads else None),
                            intermediate_size=c.get("intermediate_size") or c.get("ffn_dim") or c.get("d_ff"),
                            tie_word_embeddings=c.get("tie_word_embeddings")), "cached config.json"
    if cfg.arch is not None:
        return cfg.arch, "model config `arch`"
    p = (cfg.params_billion or 0.001) * 1e9
    hidden = max(128, int((p / 12 / 32) ** 0.5))
    return ArchSpec(vocab_size=32000, hidden_size=hidden, num_layers=32), "guess (no arch given)"


def _from_numbers(cfg: ModelConfig) -> Inventory:
    """Without a config: embeddings (and an untied head, unless `arch.tie_word_embeddings`) are vocabulary x width,
    the rest are Linear weights; a LoRA target is width x width in attention, width x MLP width in the MLP."""
    arch, where = architecture(cfg)
    h, layers, vocab = arch.hidden_size, arch.num_layers, arch.vocab_size
    p = int((cfg.params_billion or 0.001) * 1e9)
    tied = bool(arch.tie_word_embeddings)
    plain = vocab * h * (1 if tied else 2) + layers * 2 * h
    quant = max(0, p - plain)
    kv_out = (arch.num_kv_heads or 0) * (arch.head_dim or 0) or h
    attn = 2 * h * h + 2 * h * kv_out  # q, o and k, v
    mlp = arch.intermediate_size or max(h, (quant // max(1, layers) - attn) // (3 * h))
    shape = {"q_proj": (h, h), "o_proj": (h, h), "out_proj": (h, h), "k_proj": (h, kv_out), "v_proj": (h, kv_out),
             "gate_proj": (h, mlp), "up_proj": (h, mlp), "down_proj": (mlp, h), "fc1": (h, mlp), "fc2": (mlp, h)}
    shapes = [shape.get(t, (h, h)) for t in cfg.target_modules for _ in range(layers)]
    rows = layers * (3 * h + 2 * kv_out + 2 * mlp)
    return Inventory(quantizable=quant, quantizable_rows=rows, quantizable_modules=7 * layers, plain=plain, hidden=h,
                     vocab=vocab, tied=tied, lora_shapes=shapes, source=f"{where}, estimated from params_billion")
