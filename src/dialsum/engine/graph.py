"""Stage construction, in one place: which stages a config needs and what each is keyed by.

Every command (`run`, `train`, `generate`, `ensemble RUN_DIR`, `tune`) builds its stages here, so all share one
code path and one cache layout, `runs/cache/<kind>/<key>/`: a stage's key is a hash of exactly its inputs (config
sections, data hashes, upstream keys), its context says only where things are.
"""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.config import ModelConfig, RunConfig
from dialsum.engine.core import Stage, sha256_file
from dialsum.engine.kinds import KINDS, VERSIONS
from dialsum.engine.runs import RunContext
from dialsum.errors import DialsumError
from dialsum.hardware import gpu_present

# Fields of a model config that cannot change a trained adapter / generated text.
NOT_FOR_TRAINING = {"name", "decodings", "params_billion", "arch", "expect", "align"}
NOT_FOR_GENERATION = {"train", "lora", "quantization", "target_modules", "params_billion", "arch", "expect",
                      "align"}
LARGE_FILE = 64 << 20  # files of a local model folder above this are keyed by size and mtime, not hashed


# options added after stage keys existed: keyed only when set, so earlier caches stay valid
_KEYED_WHEN_SET = {"launcher": "none", "nproc": 1}


def _model_dump(m: ModelConfig, exclude: set[str]) -> dict:
    out = m.model_dump(mode="json", exclude=exclude)
    if "train" in out:
        out["train"] = {k: v for k, v in out["train"].items() if _KEYED_WHEN_SET.get(k, object()) != v}
    return out


def base_of(ctx: RunContext, m: ModelConfig) -> tuple[dict, str, list[str]]:
    """(keyed identity of the base model, its path, upstream stage names); a tiny model is a build stage."""
    if m.path is not None:
        return base_identity(m.path, m.revision), m.path, []
    build = ctx.add(Stage(f"build:{m.name}", "build", VERSIONS["build"], "dialsum.engine.tasks:build_tiny",
                          {"tiny": m.tiny.model_dump(mode="json"), "family": m.family, "train": ctx.hashes["train"]},
                          {"data_dir": str(ctx.data_dir)}, child=True))
    return {"build": build.key}, str(build.out_dir(ctx.cache) / "model"), [build.name]


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
    import os
    import re

    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    ref = Path(hub) / f"models--{repo.replace('/', '--')}" / "refs" / rev
    return ref.read_text().strip() if ref.is_file() else None


def resolved_backend(m: ModelConfig, backend: str, quantization: str = "none") -> str:
    """The engine a generate stage really uses, resolved before keying (so `auto` and `vllm` share outputs): seq2seq
    models always generate with transformers; `auto` means vLLM where it is installed, except at 4 bits (vLLM has no
    4-bit loading) and at 8 bits without a GPU."""
    if m.family == "seq2seq":
        return "hf"
    if backend == "auto" and (quantization == "4bit" or (quantization == "8bit" and not gpu_present())):
        return "hf"  # vLLM: no 4-bit loading; its 8-bit (online fp8) needs a CUDA GPU
    if backend == "auto":
        import importlib.util

        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    return backend


def quantization_key(gen) -> dict:
    """`generate.quantization` in a generating stage's key; absent at `none`, so keys from before it existed hold."""
    return {"quantization": gen.quantization} if gen.quantization != "none" else {}


def metric_inputs(cfg: RunConfig) -> dict:
    return cfg.metric.model_dump(mode="json")


def train_stage(ctx: RunContext, m: ModelConfig) -> Stage:
    base_id, base_path, deps = base_of(ctx, m)
    return ctx.add(Stage(
        f"train:{m.name}", "train", VERSIONS["train"], "dialsum.engine.tasks:train",
        {"model": _model_dump(m, NOT_FOR_TRAINING), "base": base_id, "train": ctx.hashes["train"],
         "dev": ctx.hashes["dev"], "dev_select": list(ctx.split.select), "metric": metric_inputs(ctx.cfg)},
        {"data_dir": str(ctx.data_dir), "base_path": base_path, "model": m.model_dump(mode="json"),
         "gpus": m.train.nproc, "launcher": m.train.launcher},
        child=True, deps=tuple(deps)))


def adapter_identity(adapter: Path) -> dict:
    """Content hash of an adapter folder's config and weights (an adapter from anywhere, `generate --adapter`)."""
    from dialsum.config import VLLM_LORA_RANKS

    adapter = Path(adapter)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise DialsumError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        acfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DialsumError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(acfg, dict) or acfg.get("peft_type") != "LORA":
        raise DialsumError(f"{cfg_file}: not a LoRA adapter (peft_type {acfg.get('peft_type') if isinstance(acfg, dict) else None!r})")
    if acfg.get("r") not in VLLM_LORA_RANKS:
        raise DialsumError(f"{cfg_file}: rank {acfg.get('r')!r} is not one vLLM serves ({VLLM_LORA_RANKS})")
    weights = sorted(adapter.glob("adapter_model.*"))
    if not weights:
        raise DialsumError(f"{adapter}: no adapter_model.safetensors/.bin")
    return {"adapter_sha": {p.name: sha256_file(p) for p in [cfg_file, *weights]}}


def generate_stage(ctx: RunContext, m: ModelConfig, adapter: Path | None = None) -> Stage:
    """Candidates of one model: with the train stage's weights (its `adapter/`, or `model/` after full fine-tuning),
    or with `adapter` when given (then no training)."""
    base_id, base_path, deps = base_of(ctx, m)
    if adapter is None and m.align.method != "none":  # the aligned weights when they beat SFT, else SFT's
        tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
        al = ctx.stages.get(f"align:{m.name}") or align_stage(ctx, m)
        upstream, deps = {"align": al.key}, [al.name]
        where = {"trained": str(tr.out_dir(ctx.cache)), "aligned": str(al.out_dir(ctx.cache)),
                 "adapter_label": f"align:{al.key}"}
    elif adapter is None:
        tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
        upstream, deps = {"train": tr.key}, [tr.name]
        where = {"trained": str(tr.out_dir(ctx.cache)), "adapter_label": f"train:{tr.key}"}
    else:
        upstream = adapter_identity(adapter)
        where = {"adapter": str(Path(adapter).resolve()), "adapter_label": str(Path(adapter).resolve())}
    gen = ctx.cfg.generate
    backend = resolved_backend(m, ctx.backend or gen.backend, gen.quantization)
    gen_ctx = gen.model_copy(update={"backend": backend}).model_dump(mode="json")
    return ctx.add(Stage(
        f"generate:{m.name}", "generate", VERSIONS["generate"], "dialsum.engine.tasks:generate",
        {"model": _model_dump(m, NOT_FOR_GENERATION), "base": base_id, "adapter": upstream,
         "backend": backend, **quantization_key(gen), "batch_size": gen.batch_size, "max_model_len": gen.max_model_len,
         "tensor_parallel_size": gen.tensor_parallel_size, "splits": [x for x in ("dev", "test") if x in gen.splits],
         "data": {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"]}},
        {"data_dir": str(ctx.data_dir), "base_path": base_path, **where, "model": m.model_dump(mode="json"),
         "generate": gen_ctx, "gpus": gen.tensor_parallel_size if backend == "vllm" else 1},
        child=True, deps=tuple(deps)))


def prefs_stage(ctx: RunContext, m: ModelConfig) -> Stage:
    """K samples per aligned train dialogue from the SFT model, ranked by the metric (dpo and rank learn from them).
    Keyed by the SFT weights, the sampling part of `align` and the generation backend: changing beta or the
    learning rate reuses the samples."""
    tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
    base_id, base_path, _ = base_of(ctx, m)
    gen = ctx.cfg.generate
    backend = resolved_backend(m, ctx.backend or gen.backend, gen.quantization)
    return ctx.add(Stage(
        f"prefs:{m.name}", "prefs", VERSIONS["prefs"], "dialsum.engine.tasks:prefs",
        {"train": tr.key, "base": base_id, "model": _model_dump(m, NOT_FOR_GENERATION | {"decodings"}),
         "sampling": m.align.model_dump(mode="json", include={"rows", "samples", "temperature", "top_p", "seed"}),
         "backend": backend, **quantization_key(gen), "batch_size": gen.batch_size, "data": ctx.hashes["train"],
         "metric": metric_inputs(ctx.cfg)},
        {"data_dir": str(ctx.data_dir), "base_path": base_path, "trained": str(tr.out_dir(ctx.cache)),
         "model": m.model_dump(mode="json"), "generate": gen.model_copy(update={"backend": backend}).model_dump(mode="json")},
        child=True, deps=(tr.name,)))


def align_stage(ctx: RunContext, m: ModelConfig) -> Stage:
    """Preference optimisation after SFT (`align.method`), kept only when it beats SFT on dev-select by more than
    one standard error, both scored greedy with the backend (and quantisation, batch) the generate stage uses:
    those are keyed, with the model fields that change generated text."""
    tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
    base_id, base_path, _ = base_of(ctx, m)
    gen = ctx.cfg.generate
    backend = resolved_backend(m, ctx.backend or gen.backend, gen.quantization)
    inputs = {"train": tr.key, "base": base_id, "align": m.align.model_dump(mode="json"),
              "train_data": ctx.hashes["train"], "metric": metric_inputs(ctx.cfg), **split_inputs(ctx),
              "scoring": {"backend": backend, **quantization_key(gen), "batch_size": gen.batch_size,
                          "model": _model_dump(m, NOT_FOR_GENERATION | {"decodings"})}}
    context = {"data_dir": str(ctx.data_dir), "base_path": base_path, "trained": str(tr.out_dir(ctx.cache)),
               "model": m.model_dump(mode="json"),
               "generate": gen.model_copy(update={"backend": backend}).model_dump(mode="json")}
    deps = [tr.name]
    if m.align.method in ("dpo", "rank"):
        pr = ctx.stages.get(f"prefs:{m.name}") or prefs_stage(ctx, m)
        inputs["prefs"], context["prefs"] = pr.key, str(pr.out_dir(ctx.cache) / "preferences.csv")
        deps.append(pr.name)
    return ctx.add(Stage(f"align:{m.name}", "align", VERSIONS["align"], "dialsum.engine.tasks:align", inputs, context,
                         child=True, deps=tuple(deps)))


def parts_of(ctx: RunContext, gen: Stage) -> list[str]:
    m = gen.context["model"]
    store = gen.out_dir(ctx.cache) / "candidates"
    return [str(store / f"{m['name']}__{d['name']}.csv") for d in m["decodings"]]


def split_inputs(ctx: RunContext) -> dict:
    return {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"], "dev_select": list(ctx.split.select),
            "dev_report": list(ctx.split.report)}


def ensemble_stage(ctx: RunContext, gens: list[Stage]) -> Stage:
    return ensemble_stage_from(ctx, [g.key for g in gens], [p for g in gens for p in parts_of(ctx, g)],
                               tuple(g.name for g in gens))


def ensemble_stage_from(ctx: RunContext, gen_keys: list[str], parts: list[str], deps: tuple[str, ...] = ()) -> Stage:
    return ctx.add(Stage(
        "ensemble", "ensemble", VERSIONS["ensemble"], "dialsum.engine.tasks:ensemble",
        {"generate": list(gen_keys), "ensemble": ctx.cfg.ensemble.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {"data_dir": str(ctx.data_dir), "parts": list(parts)}, deps=deps))


def ensemble_stage_of_run(ctx: RunContext) -> Stage:
    """The ensemble stage over whatever candidates this run folder's generate stages resolved to (its manifest):
    the trained adapters, or an adapter given with `generate --adapter`."""
    man = json.loads((ctx.run_dir / "manifest.json").read_text(encoding="utf-8")).get("stages", {})
    keys, parts, missing = [], [], []
    for m in ctx.cfg.models:
        rec = man.get(f"generate:{m.name}")
        if not rec or not all(Path(x).is_file() for x in rec["result"]["parts"]):
            missing.append(m.name)
            continue
        keys.append(rec["key"])
        parts += rec["result"]["parts"]
    if missing:
        raise DialsumError(f"{ctx.run_dir}: no finished candidates for model(s) {missing}; run "
                           f"`dialsum generate --config ...` (or `dialsum run`) first")
    return ensemble_stage_from(ctx, keys, parts, tuple(f"generate:{m.name}" for m in ctx.cfg.models))


def postprocess_stage(ctx: RunContext, ens: Stage) -> Stage:
    return ctx.add(Stage(
        "postprocess", "postprocess", VERSIONS["postprocess"], "dialsum.engine.tasks:postprocess",
        {"ensemble": ens.key, "postprocess": ctx.cfg.postprocess.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {"data_dir": str(ctx.data_dir), "picks": str(ens.out_dir(ctx.cache) / "picks.csv")}, deps=(ens.name,)))


def submit_stage(ctx: RunContext, post: Stage) -> Stage:
    return ctx.add(Stage(
        "submit", "submit", VERSIONS["submit"], "dialsum.engine.tasks:submit",
        {"postprocess": post.key, "run_id": ctx.run_id, "submissions_dir": str(Path(ctx.cfg.submissions_dir).resolve()),
         "sample": ctx.hashes["sample"]},
        {"data_dir": str(ctx.data_dir), "final": str(post.out_dir(ctx.cache) / "final.csv")}, deps=(post.name,)))


def model_stages(ctx: RunContext, models: list[ModelConfig]) -> list[Stage]:
    out = []
    for m in models:
        tr = train_stage(ctx, m)
        out += [ctx.stages[d] for d in tr.deps] + [tr]
        if m.align.method != "none":
            al = align_stage(ctx, m)
            out += [ctx.stages[d] for d in al.deps if d != tr.name] + [al]
        out.append(generate_stage(ctx, m))
    return out


def full_plan(ctx: RunContext) -> list[Stage]:
    if set(ctx.cfg.generate.splits) != {"dev", "test"}:
        raise DialsumError(f"generate.splits {ctx.cfg.generate.splits}: `dialsum run` fits the ensemble on dev and "
                           f"submits test, so it needs both; `dialsum generate` honours a single split")
    stages = model_stages(ctx, ctx.cfg.models)
    gens = [s for s in stages if s.kind == "generate"]
    ens = ensemble_stage(ctx, gens)
    post = postprocess_stage(ctx, ens)
    return stages + [ens, post, submit_stage(ctx, post)]


def forced_set(stages: list[Stage], force: list[str], from_stage: str | None) -> set[str]:
    """Stage names to recompute: those named (a name like `train:tiny` or a kind like `train`), every kind from
    `from_stage` on, and everything downstream of them."""
    names = {s.name for s in stages}
    forced = set()
    for f in force:
        hit = {s.name for s in stages if s.name == f or s.kind == f}
        if not hit:
            raise DialsumError(f"--force {f}: no such stage in this run (stages: {', '.join(sorted(names))})")
        forced |= hit
    if from_stage:
        order = KINDS.index(from_stage)
        forced |= {s.name for s in stages if KINDS.index(s.kind) >= order}
    changed = True
    while changed:
        changed = False
        for s in stages:
            if s.name not in forced and forced.intersection(s.deps):
                forced.add(s.name)
                changed = True
    return forced


def select_models(cfg: RunConfig, names: list[str] | None) -> list[ModelConfig]:
    if not names:
        return list(cfg.models)
    chosen = [m for m in cfg.models if m.name in names]
    unknown = set(names) - {m.name for m in chosen}
    if unknown:
        raise DialsumError(f"unknown model(s) {sorted(unknown)}; configured: {[m.name for m in cfg.models]}")
    return chosen


def devscore_stage(ctx: RunContext, m: ModelConfig, rows: list[str], tag: str) -> Stage:
    """Greedy decoding of the given dev rows with the model's trained weights, scored (a tuning trial's value)."""
    tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
    base_id, base_path, _ = base_of(ctx, m)
    upstream, dep, where = {"train": tr.key}, tr.name, {}
    if m.align.method != "none":  # score what generation would use: the aligned weights when kept
        al = ctx.stages.get(f"align:{m.name}") or align_stage(ctx, m)
        upstream, dep, where = {"align": al.key}, al.name, {"aligned": str(al.out_dir(ctx.cache))}
    return Stage(f"devscore:{m.name}:{tag}", "devscore", VERSIONS["devscore"], "dialsum.engine.tasks:devscore",
                 {**upstream, "base": base_id, "rows": rows, "dev": ctx.hashes["dev"],
                  "metric": metric_inputs(ctx.cfg),
                  "model": m.model_dump(mode="json", include={"prompt_format", "system_prompt", "instruction",
                                                              "max_input_tokens", "max_new_tokens", "precision"})},
                 {"data_dir": str(ctx.data_dir), "base_path": base_path, "model": m.model_dump(mode="json"),
                  "trained": str(tr.out_dir(ctx.cache)), **where}, child=True, deps=(dep,))
