"""Load a base model and tokenizer the same way for a hub id, a local folder or the tiny model.

Quantisation (4-bit nf4 + double quantisation, or 8-bit) goes through bitsandbytes on GPU and CPU alike. On CPU,
bitsandbytes' fused avx512-bf16 inference kernel silently breaks gradients through frozen 4-bit layers after any
eval-mode forward; `disable_bnb_cpu_fused_kernel` switches it off (see ../shared/GUIDE.md §2).
"""
from __future__ import annotations

import os
from pathlib import Path

from dialsum.config import ModelConfig
from dialsum.errors import DialsumError
from dialsum.hardware import gpu_present, has_cuda


def compute_dtype(precision: str):
    import torch

    if precision == "auto":
        if has_cuda():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def check_source(path: str) -> None:
    """Fail in one line, not a hang or a traceback, when a hub id cannot be had (offline, no cache)."""
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise DialsumError(f"{path}: not a model folder (no config.json)")
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(path, "config.json")
    if isinstance(cached, str):
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise DialsumError(f"model {path!r}: not a local folder and not in the Hugging Face cache, and the Hub "
                           f"cannot be reached from here; download it first (huggingface-cli download {path}) "
                           f"or point `path` at a local copy")


def _hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_feasible(cfg: ModelConfig) -> None:
    """Refuse plans that cannot finish here, e.g. a 10B 4-bit model on a CPU-only machine."""
    if not gpu_present() and cfg.tiny is None and (cfg.params_billion or 0) >= 1:
        raise DialsumError(f"model {cfg.name}: {cfg.params_billion:g}B parameters need a CUDA GPU "
                           f"(none found); use configs/default.yaml on CPU")


def load_tokenizer(path: str, cfg: ModelConfig):
    """The tokenizer, with the competition's tags as atomic tokens (see special_tokens) and a pad token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    return prepare_tokenizer(tok, cfg)


def prepare_tokenizer(tok, cfg: ModelConfig):
    """What dialsum does to every tokenizer it loads: a pad token, mBART's language code, the tags as tokens."""
    from dialsum.models.special_tokens import ensure_tags

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if cfg.lang_code:
        tok.src_lang = tok.tgt_lang = cfg.lang_code
    tok.dialsum_added_ids = ensure_tags(tok)  # the tags this checkpoint's vocabulary lacked (see fit_embeddings)
    return tok


def check_expected(cfg: ModelConfig, tokenizer, model) -> None:
    """The config's `expect` facts against the loaded checkpoint (model config, generation config, tokenizer)."""
    seen = {"vocab_size": model.config.vocab_size,
            "eos_token_id": getattr(model.generation_config, "eos_token_id", None) or model.config.eos_token_id,
            "bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token}
    for key, want in cfg.expect.items():
        if key not in seen:
            raise DialsumError(f"model {cfg.name}: expect.{key}: unknown fact (one of {', '.join(seen)})")
        got = seen[key]
        if got != want and not (isinstance(got, list) and want in got):
            raise DialsumError(f"model {cfg.name}: {cfg.path} (revision {cfg.revision or 'main'}) has {key} {got!r}, "
                               f"expected {want!r}: another revision of the checkpoint? pin `revision`")


def model_class(cfg: ModelConfig):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if cfg.family == "seq2seq" else AutoModelForCausalLM


def fit_embeddings(model, tokenizer) -> list[int]:
    """Give every token the checkpoint never trained an embedding row; returns their ids (the rows to train).

    Those are the tags dialsum added to a real checkpoint's tokenizer, and any token a checkpoint's tokenizer has
    beyond its matrix. Their input rows (and output rows, where the LM head is its own matrix) start as the mean of the
    checkpoint's real rows: deterministic, so every load of the same base is the same model (transformers' own mean
    resizing samples around the mean). Some checkpoints pad the matrix beyond the tokenizer (Qwen: 151,936 rows for
    151,665 tokens); then the tags land on padding rows the model never trained, which get the same mean."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    fresh = sorted(set(getattr(tokenizer, "dialsum_added_ids", [])) | set(range(rows, len(tokenizer))))
    if not fresh:
        return []
    real = torch.ones(rows, dtype=torch.bool)
    real[[i for i in fresh if i < rows]] = False
    real[min(rows, len(tokenizer)):] = False  # padding rows are not vocabulary
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        layers = [model.get_input_embeddings()]
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != layers[0].weight.data_ptr():
            layers.append(head)
        for layer in layers:
            w = layer.weight
            w[fresh] = w[:rows][real].float().mean(0).to(w.dtype)
    return fresh


def trainable_token_rows(model, ids: list[int]):
    """PEFT `trainable_token_indices` for the added tags: their input rows, and also their LM-head rows when the
    head is not tied to the input embeddings (else the model could read the tags but never learn to write them)."""
    if not ids:
        return None
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or head.weight.data_ptr() == emb.weight.data_ptr():
        return ids
    names = {id(m): n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    return {names[id(emb)]: ids, names[id(head)]: ids}


def lean_adapter_saves(model):
    """Every save of this PEFT model (dialsum's and the Trainer's checkpoints) writes the adapter alone. PEFT's
    default (`save_embedding_layers="auto"`) adds both whole embedding matrices to every adapter and checkpoint
    once the vocabulary was resized for the tags: ~4 GiB each for an 8B Llama-3, for rows that are the base's own
    plus the tags' deterministic starting rows (`fit_embeddings` rebuilds them at every load); the trained tag rows
    are saved as PEFT's trainable tokens. Returns the model."""
    import functools

    if hasattr(model, "peft_config"):
        model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_embedding_layers=False)
    return model


def load_model(path: str, cfg: ModelConfig, quantization: str | None = None, device: str | None = None,
               master_fp32: bool = False):
    """The base model as configured (quantization=None: the config's; "none": full precision, for merges/vLLM);
    on the GPU when there is one, unless `device` says otherwise. `master_fp32`: weights in fp32 whatever the
    compute precision (full fine-tuning trains them; the Trainer autocasts to bf16/fp16)."""
    import torch
    from transformers import BitsAndBytesConfig

    quantization = cfg.quantization if quantization is None else quantization
    dtype = compute_dtype(cfg.precision)
    kwargs: dict = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code,
                    "dtype": torch.float32 if master_fp32 else dtype}
    if quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    elif quantization == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if device is not None:
        kwargs["device_map"] = {"": device}
    elif has_cuda():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = model_class(cfg).from_pretrained(path, **kwargs)
    disable_bnb_cpu_fused_kernel(model)
    if not has_cuda():
        torch.set_num_threads(max(1, torch.get_num_threads()))
    return model


def is_full_model(adapter_dir) -> bool:
    """Trained weights that are a whole model (full fine-tuning), not a LoRA adapter: then they are their own base."""
    return adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").is_file()


def trained_weights(train_dir: Path) -> Path:
    """A train stage's weights: `model/` after full fine-tuning, `adapter/` after (Q)LoRA (and, in stage folders
    written before full fine-tuning had its own folder, a whole model under `adapter/`)."""
    model = Path(train_dir) / "model"
    return model if model.is_dir() else Path(train_dir) / "adapter"


def load_for_inference(cfg: ModelConfig, base_path: str, adapter_dir: Path | None, device: str | None = None,
                       quantization: str = "none"):
    """(tokenizer, model) as generation runs them: the compute dtype (or, with `generate.quantization`, the base's
    Linear layers through bitsandbytes; embeddings and LM head stay in the compute dtype), rows for every fresh token
    (fit_embeddings), the LoRA adapter applied unmerged (PeftModel), or the fully fine-tuned model itself."""
    full = is_full_model(adapter_dir)
    path = str(adapter_dir) if full else base_path
    tokenizer = load_tokenizer(path, cfg)
    model = load_model(path, cfg, quantization=quantization, device=device)
    fit_embeddings(model, tokenizer)
    if adapter_dir is not None and not full:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    return tokenizer, model


def disable_bnb_cpu_fused_kernel(model) -> int:
    """Turn off bitsandbytes' CPU avx512-bf16 repacking for every Linear4bit; returns how many were found."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def quantized_layers(model) -> dict[str, int]:
    """How many Linear layers bitsandbytes really holds at 4 and at 8 bits: what a train stage records, so a run can
    show QLoRA trained on a quantised base and not silently on a full-precision one."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return {"4bit": 0, "8bit": 0}
    mods = list(model.modules())
    return {"4bit": sum(isinstance(m, bnb.nn.Linear4bit) for m in mods),
            "8bit": sum(isinstance(m, bnb.nn.Linear8bitLt) for m in mods)}
