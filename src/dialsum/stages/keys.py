"""What stage keys are made of, shared by the stage modules: the keyed view of a model's config, a base model's
identity, the backend that really generates, the metric and the dev split. A key holds exactly what changes an
output (dialsum.engine.core.Stage.key), so the same inputs reuse the same cache folder under any run id."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from dialsum.config import VLLM_LORA_RANKS, ModelConfig, RunConfig
from dialsum.engine.core import sha256_file
from dialsum.engine.run_folder import RunContext
from dialsum.errors import DialsumError
from dialsum.hardware import resolve_backend

# Fields of a model config that cannot change a trained adapter / generated text.
PLAN_ONLY = {"params_billion", "arch", "tokens_per_char"}  # numbers for --dry-run: never keyed
NOT_FOR_TRAINING = {"name", "decodings", "expect", "align"} | PLAN_ONLY
NOT_FOR_GENERATION = {"train", "lora", "quantization", "target_modules", "expect", "align"} | PLAN_ONLY
LARGE_FILE = 64 << 20  # files of a local model folder above this are keyed by size and mtime, not hashed
KEYED_WHEN_SET = {"launcher": "none", "nproc": 1}  # options added after keys existed: keyed only when set


def keyed_model(m: ModelConfig, exclude: set[str]) -> dict:
    """A model's config as keyed: without `exclude`, and without train options still at their pre-existing value."""
    out = m.model_dump(mode="json", exclude=exclude)
    if "train" in out:
        out["train"] = {k: v for k, v in out["train"].items() if KEYED_WHEN_SET.get(k, object()) != v}
    return out


def base_identity(path: str, revision: str | None) -> dict:
    """What a base model's key holds, so a changed base never reuses old adapters: a local folder's files (content
    hashes; size and mtime for files over 64 MiB, i.e. weight shards), or a hub id with its revision and the commit
    that revision resolved to in the local Hugging Face cache."""
    p = Path(path)
    if p.is_dir():
        files = {}
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            st = f.stat()
            files[str(f.relative_to(p))] = (sha256_file(f) if st.st_size <= LARGE_FILE
                                            else f"size={st.st_size},mtime_ns={st.st_mtime_ns}")
        return {"files": files}
    return {"path": path, "revision": revision, "commit": hub_commit(path, revision)}


def hub_commit(repo: str, revision: str | None) -> str | None:
    """The commit a hub revision resolves to in the local cache (huggingface_hub's refs/<revision> file), or None."""
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    ref = Path(hub) / f"models--{repo.replace('/', '--')}" / "refs" / rev
    return ref.read_text().strip() if ref.is_file() else None


def adapter_identity(adapter: Path) -> dict:
    """Content hash of an adapter folder's config and weights (an adapter from anywhere, `generate --adapter`)."""
    adapter = Path(adapter)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise DialsumError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        acfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DialsumError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(acfg, dict) or acfg.get("peft_type") != "LORA":
        raise DialsumError(f"{cfg_file}: not a LoRA adapter (peft_type "
                           f"{acfg.get('peft_type') if isinstance(acfg, dict) else None!r})")
    if acfg.get("r") not in VLLM_LORA_RANKS:
        raise DialsumError(f"{cfg_file}: rank {acfg.get('r')!r} is not one vLLM serves ({VLLM_LORA_RANKS})")
    weights = sorted(adapter.glob("adapter_model.*"))
    if not weights:
        raise DialsumError(f"{adapter}: no adapter_model.safetensors/.bin")
    return {"adapter_sha": {p.name: sha256_file(p) for p in [cfg_file, *weights]}}


def generation_backend(ctx: RunContext, m: ModelConfig) -> str:
    """The engine a generating stage really uses, resolved before keying (so `auto` and `vllm` share outputs):
    dialsum.hardware.resolve_backend."""
    gen = ctx.cfg.generate
    return resolve_backend(ctx.backend or gen.backend, gen.quantization, m.family)


def generation_context(ctx: RunContext, backend: str) -> dict:
    """The generate section as a stage's context, with the backend resolved."""
    return ctx.cfg.generate.model_copy(update={"backend": backend}).model_dump(mode="json")


def quantization_key(ctx: RunContext) -> dict:
    """`generate.quantization` in a generating stage's key; absent at `none`, so keys from before it existed hold."""
    q = ctx.cfg.generate.quantization
    return {"quantization": q} if q != "none" else {}


def metric_inputs(cfg: RunConfig) -> dict:
    return cfg.metric.model_dump(mode="json")


def split_inputs(ctx: RunContext) -> dict:
    return {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"], "dev_select": list(ctx.split.select),
            "dev_report": list(ctx.split.report)}


def data_context(ctx: RunContext) -> dict:
    """Where a stage finds the data, and the smoke mode's row limit (the keyed data hashes are of those rows)."""
    limit = ctx.cfg.data.limit
    return {"data_dir": str(ctx.data_dir), **({"limit": limit, "limit_seed": ctx.cfg.seed} if limit else {})}


def planned(ctx: RunContext, name: str, plan, m: ModelConfig):
    """The stage `name` if this run already planned it, else planned now (one model's train, align, prefs)."""
    return ctx.stages.get(name) or plan(ctx, m)
