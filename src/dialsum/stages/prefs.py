"""prefs: K samples per aligned train dialogue from the SFT model, each scored against its reference
(preferences.csv: fname, candidate, score, rank), what dpo and rank learn from. Keyed by the SFT weights, the sampling
part of `align` and the generation backend: changing beta or the learning rate reuses the samples."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import GenerateSpec, ModelConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.stages import train
from dialsum.stages.build import base_of
from dialsum.stages.common import load_data, weights_of
from dialsum.stages.keys import (NOT_FOR_GENERATION, data_context, generation_backend, generation_context,
                                 keyed_model, metric_inputs, planned, quantization_key)

KIND, VERSION, CHILD = "prefs", 1, True
SAMPLING = {"rows", "samples", "temperature", "top_p", "seed"}  # the part of `align` that changes the samples


def plan(ctx: RunContext, m: ModelConfig) -> Stage:
    tr = planned(ctx, f"train:{m.name}", train.plan, m)
    base_id, base_path, _ = base_of(ctx, m)
    backend = generation_backend(ctx, m)
    return ctx.add(Stage(
        f"prefs:{m.name}", KIND, VERSION, "dialsum.stages.prefs:run",
        {"train": tr.key, "base": base_id, "model": keyed_model(m, NOT_FOR_GENERATION | {"decodings"}),
         "sampling": m.align.model_dump(mode="json", include=SAMPLING), "backend": backend,
         **quantization_key(ctx), "batch_size": ctx.cfg.generate.batch_size, "data": ctx.hashes["train"],
         "metric": metric_inputs(ctx.cfg)},
        {**data_context(ctx), "base_path": base_path, "trained": str(tr.out_dir(ctx.cache)),
         "model": m.model_dump(mode="json"), "generate": generation_context(ctx, backend)},
        child=CHILD, deps=(tr.name,)))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.align.preferences import align_rows, check_train_only, write_preferences
    from dialsum.align.sampling import sample_preferences

    cfg = ModelConfig.model_validate(context["model"])
    data = load_data(context)
    rows = align_rows(data.train, cfg.align.rows, cfg.align.seed)
    ranked = sample_preferences(cfg, context["base_path"], weights_of({"trained": context["trained"]}), rows,
                                cfg.align, GenerateSpec.model_validate(context["generate"]), out / "samples",
                                inputs["metric"])
    check_train_only(ranked, {d.fname for d in data.train}, out / "preferences.csv")
    write_preferences(out / "preferences.csv", ranked)
    scores: dict[str, list[float]] = {}
    for r in ranked:
        scores.setdefault(r.fname, []).append(r.score)
    spread = sum(1 for s in scores.values() if max(s) - min(s) >= cfg.align.min_margin)
    return {"preferences": str(out / "preferences.csv"), "dialogues": len(rows), "distinct_samples": len(ranked),
            "dialogues_with_margin": spread}
