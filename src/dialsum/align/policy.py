"""The policy alignment continues from: the SFT weights loaded for training exactly as SFT trained them (the same
(4-bit) base, the SFT LoRA adapter made trainable again, or the fully fine-tuned model itself), greedy dev scoring
of it before and after, and saving only the trained adapter.

TRL 1.16 keeps the SFT policy as DPO's and GRPO's reference by itself: handed a PeftModel that already has an
adapter and no `ref_model`, it copies the adapter to a frozen `ref` adapter (dpo_trainer.py and grpo_trainer.py,
"If the model is a PEFT model with a pretrained adapter"), so no second model is loaded.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

from dialsum.config import DecodingSpec, ModelConfig
from dialsum.io.data import Dialogue


def load_policy(cfg: ModelConfig, base_path: str, sft_weights: Path):
    """(tokenizer, model, stops): the SFT model in training form. LoRA/QLoRA: base as SFT loaded it (4-bit for
    qlora, k-bit prepared) plus the SFT adapter, trainable; full fine-tuning: the SFT model itself, fp32 master."""
    from dialsum.hardware import has_cuda
    from dialsum.models.encoding import model_stops
    from dialsum.models.loading import fit_embeddings, is_full_model, lean_adapter_saves, load_model, load_tokenizer

    full = is_full_model(sft_weights)
    path = str(sft_weights) if full else base_path
    tokenizer = load_tokenizer(path, cfg)
    model = load_model(path, cfg, quantization="none" if full or cfg.method != "qlora" else None, master_fp32=full)
    fit_embeddings(model, tokenizer)
    if not full:
        from peft import PeftModel, prepare_model_for_kbit_training

        if cfg.method == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.train.gradient_checkpointing and has_cuda())
        model = lean_adapter_saves(PeftModel.from_pretrained(model, str(sft_weights), is_trainable=True))
        expose_head_bias(model)
    stops = model_stops(tokenizer, model.generation_config.eos_token_id, cfg)
    return tokenizer, model, stops


def expose_head_bias(model) -> int:
    """Let TRL's fused LM head read a head whose tag rows PEFT trains (every real checkpoint with an untied head).

    TRL 1.16 computes log-probs from `lm_head.weight` and `lm_head.bias` itself (trainer/utils.py, `_fused_forward`).
    PEFT's TrainableTokensWrapper answers `weight` with the merged weight of the active adapter (so the policy and
    TRL's `ref` copy each see their own tag rows, with gradients) but has no `bias` and raises. LM heads have none:
    the wrapper gets a plain `bias = None`. Returns how many heads were given one."""
    from peft.utils.other import TrainableTokensWrapper

    n = 0
    for module in model.modules():
        if isinstance(module, TrainableTokensWrapper) and "bias" not in vars(module):
            base = module.original_module
            if getattr(base, "bias", None) is not None:
                raise NotImplementedError(f"{type(base).__name__} with a bias under trainable tag rows")
            object.__setattr__(module, "bias", None)
            n += 1
    return n


@contextmanager
def trl_keeps_the_policy(model):
    """Build a TRL trainer inside this block: it undoes what TRL 1.16's DPO/GRPO constructors do to a policy that
    already holds an adapter.

    * On a k-bit base they round every trainable tensor to bf16, where small updates vanish (at lr 5e-6 most LoRA
      entries never move) and the SFT weights themselves lose their low bits: the exact fp32 tensors, saved before
      the constructor, are put back.
    * The frozen `ref` adapter is a copy of the parameters named `.default.`, which misses PEFT's trainable-token
      rows (`…trainable_tokens_delta.default`, no trailing dot): `ref` would read and write the competition's tags
      with the base's untrained rows (KL and implicit reward far from 0 on tag tokens before any step). Every
      `default` tensor is copied into its `ref` twin, so the reference is exactly the SFT policy."""
    import torch

    k_bit = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    # only where TRL casts (a k-bit base): the adapter and tag rows, small; never a whole fully fine-tuned model
    exact = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad} if k_bit else {}
    yield
    params = dict(model.named_parameters())
    for name, value in exact.items():  # on the device the constructor left the parameter on
        params[name].data = value.to(params[name].device)
    with torch.no_grad():
        for name, param in params.items():
            parts = name.split(".")
            twin = params.get(".".join("ref" if p == "default" else p for p in parts)) if "default" in parts else None
            if twin is not None:
                twin.data = param.data.detach().clone().to(twin.dtype)


def greedy_preds(model, tokenizer, cfg: ModelConfig, rows: list[Dialogue], stops: list[int],
                 batch_size: int = 16) -> dict[str, str]:
    """fname -> greedy summary, decoded the way generation decodes (with the model's active adapter only)."""
    from dialsum.models.encoding import encode_input, generation_extras
    from dialsum.models.hf_backend import generate_hf

    prompts = [encode_input(tokenizer, d.dialogue, cfg) for d in rows]
    with _only_default_adapter(model):
        outs = generate_hf(model, tokenizer, prompts, DecodingSpec(name="greedy"), cfg.max_new_tokens, batch_size,
                           extra=generation_extras(tokenizer, cfg), stops=stops)
    return {d.fname: o[0][0] for d, o in zip(rows, outs)}


class _only_default_adapter:  # noqa: N801 - used as a context manager
    """Generate with the policy (`default`) even when TRL added a `ref` adapter beside it."""

    def __init__(self, model):
        self.model = model
        self.prev = getattr(model, "active_adapter", None) if hasattr(model, "peft_config") else None

    def __enter__(self):
        if self.prev is not None and self.prev != "default":
            self.model.set_adapter("default")

    def __exit__(self, *exc):
        if self.prev is not None and self.prev != "default":
            self.model.set_adapter(self.prev)


def save_policy(model, tokenizer, out: Path) -> Path:
    """Write the aligned weights atomically: `adapter/` (only the policy adapter, never TRL's `ref` copy) or
    `model/` for a fully fine-tuned model."""
    is_peft = hasattr(model, "peft_config")
    dst = Path(out) / ("adapter" if is_peft else "model")
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if is_peft:
        model.save_pretrained(tmp, selected_adapters=["default"])
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst
