"""generate: every configured decoding of one model on dev and test, with the weights training (or alignment) kept,
or with an adapter from anywhere (`generate --adapter`). Keyed by the model fields that change generated text, the
weights' upstream key (or the adapter's content), the backend that really generates and the data."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import GenerateSpec, ModelConfig
from dialsum.engine.core import Stage, hash_json
from dialsum.engine.run_folder import RunContext
from dialsum.logs import log
from dialsum.stages import align, train
from dialsum.stages.build import base_of
from dialsum.stages.common import load_data, weights_of
from dialsum.stages.keys import (NOT_FOR_GENERATION, adapter_identity, data_context, generation_backend,
                                 generation_context, keyed_model, planned, quantization_key)

KIND, VERSION, CHILD = "generate", 5, True


def plan(ctx: RunContext, m: ModelConfig, adapter: Path | None = None) -> Stage:
    base_id, base_path, deps = base_of(ctx, m)
    if adapter is None and m.align.method != "none":  # the aligned weights when they beat SFT, else SFT's
        tr = planned(ctx, f"train:{m.name}", train.plan, m)
        al = planned(ctx, f"align:{m.name}", align.plan, m)
        upstream, deps = {"align": al.key}, [al.name]
        where = {"trained": str(tr.out_dir(ctx.cache)), "aligned": str(al.out_dir(ctx.cache)),
                 "adapter_label": f"align:{al.key}"}
    elif adapter is None:
        tr = planned(ctx, f"train:{m.name}", train.plan, m)
        upstream, deps = {"train": tr.key}, [tr.name]
        where = {"trained": str(tr.out_dir(ctx.cache)), "adapter_label": f"train:{tr.key}"}
    else:
        upstream = adapter_identity(adapter)
        where = {"adapter": str(Path(adapter).resolve()), "adapter_label": str(Path(adapter).resolve())}
    return _stage(ctx, m, f"generate:{m.name}", upstream, base_id, base_path, where, deps,
                  [x for x in ("dev", "test") if x in ctx.cfg.generate.splits])


def plan_refit(ctx: RunContext, m: ModelConfig, refit: Stage) -> Stage:
    """Candidates of a refit model: `generate-final:<model>` on test (its submission), `generate-probe:<model>` on
    dev (the pseudo-label measurement scores its dev-report rows)."""
    base_id, base_path, deps = base_of(ctx, m)
    probe = refit.name.startswith("refit-probe:")
    where = {"trained": str(refit.out_dir(ctx.cache)), "adapter_label": f"refit:{refit.key}"}
    return _stage(ctx, m, f"{'generate-probe' if probe else 'generate-final'}:{m.name}", {"refit": refit.key},
                  base_id, base_path, where, [*deps, refit.name], ["dev"] if probe else ["test"])


def _stage(ctx: RunContext, m: ModelConfig, name: str, upstream: dict, base_id: dict, base_path: str, where: dict,
           deps: list[str], splits: list[str]) -> Stage:
    gen = ctx.cfg.generate
    backend = generation_backend(ctx, m)
    return ctx.add(Stage(
        name, KIND, VERSION, "dialsum.stages.generate:run",
        {"model": keyed_model(m, NOT_FOR_GENERATION), "base": base_id, "adapter": upstream,
         "backend": backend, **quantization_key(ctx), "batch_size": gen.batch_size, "max_model_len": gen.max_model_len,
         "tensor_parallel_size": gen.tensor_parallel_size, "splits": splits,
         "data": {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"]}},
        {**data_context(ctx), "base_path": base_path, **where, "model": m.model_dump(mode="json"),
         "generate": generation_context(ctx, backend), "gpus": gen.tensor_parallel_size if backend == "vllm" else 1},
        child=CHILD, deps=tuple(dict.fromkeys(deps))))


def parts_of(ctx: RunContext, gen: Stage) -> list[str]:
    """The candidate files a generate stage writes, one per decoding."""
    m = gen.context["model"]
    store = gen.out_dir(ctx.cache) / "candidates"
    return [str(store / f"{m['name']}__{d['name']}.csv") for d in m["decodings"]]


def decoding_key(inputs: dict, decoding: dict) -> str:
    """One decoding's own key: the stage's inputs with only that decoding, so a part is found again when the model's
    other decodings change (a decoding's candidates depend on nothing else: seeds are per decoding and chunk)."""
    one = {**inputs, "model": {**inputs["model"], "decodings": [decoding]}}
    return hash_json({"kind": "decoding", "version": VERSION, "inputs": one})[:20]


def run(inputs: dict, context: dict, out: Path) -> dict:
    """Every decoding not already generated under its own key (`runs/cache/decodings/<key>/`) is generated; the
    others are copied from there, so adding or changing one decoding computes only it."""
    import shutil

    from dialsum.io.candidates import part_path
    from dialsum.models.generation import generate_candidates

    cfg = ModelConfig.model_validate(context["model"])
    store, shared = out / "candidates", out.parent.parent / "decodings"
    reused = []
    for d in inputs["model"]["decodings"]:
        mine, kept = part_path(store, cfg.name, d["name"]), part_path(shared / decoding_key(inputs, d), cfg.name,
                                                                       d["name"])
        if kept.is_file() and not mine.exists():
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, mine.with_suffix(".tmp"))
            mine.with_suffix(".tmp").replace(mine)
            reused.append(d["name"])
    if reused:
        log(f"generate {cfg.name}: reusing decoding(s) {', '.join(reused)} (generated before under the same key)")
    data = load_data(context)
    weights = weights_of(context)
    label = context.get("adapter_label")
    if context.get("aligned"):  # say which weights the align stage's decision gave generation
        label = f"{label}:{'aligned' if weights is not None and Path(context['aligned']) in weights.parents else 'sft'}"
    paths = generate_candidates(cfg, context["base_path"], weights, {s: data.split(s) for s in inputs["splits"]},
                                store, GenerateSpec.model_validate(context["generate"]), None, out,
                                adapter_label=label)
    for d in inputs["model"]["decodings"]:
        if d["name"] not in reused:
            kept = part_path(shared / decoding_key(inputs, d), cfg.name, d["name"])
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(part_path(store, cfg.name, d["name"]), kept.with_suffix(".tmp"))
            kept.with_suffix(".tmp").replace(kept)
    return {"parts": [str(p) for p in paths], "reused_decodings": reused}
