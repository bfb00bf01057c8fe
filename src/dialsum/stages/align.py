"""align: preference optimisation after SFT (`align.method`: dpo, grpo or rank; dialsum.align), the aligned weights
kept only when they beat SFT on dev-select by more than one standard error, both generated as the generate stage
generates: its backend, quantisation and batch are keyed, with the model fields that change generated text."""
from __future__ import annotations

from pathlib import Path

from dialsum import faults
from dialsum.config import GenerateSpec, ModelConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.stages import prefs, train
from dialsum.stages.build import base_of
from dialsum.stages.common import dev_rows, load_data, weights_of
from dialsum.stages.keys import (NOT_FOR_GENERATION, data_context, generation_backend, generation_context,
                                 keyed_model, metric_inputs, planned, quantization_key, split_inputs)

KIND, VERSION, CHILD = "align", 2, True
LEARNS_FROM_SAMPLES = ("dpo", "rank")  # methods that read a prefs stage's ranked samples (grpo samples online)


def plan(ctx: RunContext, m: ModelConfig) -> Stage:
    tr = planned(ctx, f"train:{m.name}", train.plan, m)
    base_id, base_path, _ = base_of(ctx, m)
    backend = generation_backend(ctx, m)
    inputs = {"train": tr.key, "base": base_id, "align": m.align.model_dump(mode="json"),
              "train_data": ctx.hashes["train"], "metric": metric_inputs(ctx.cfg), **split_inputs(ctx),
              "scoring": {"backend": backend, **quantization_key(ctx), "batch_size": ctx.cfg.generate.batch_size,
                          "model": keyed_model(m, NOT_FOR_GENERATION | {"decodings"})}}
    context = {**data_context(ctx), "base_path": base_path, "trained": str(tr.out_dir(ctx.cache)),
               "model": m.model_dump(mode="json"), "generate": generation_context(ctx, backend)}
    deps = [tr.name]
    if m.align.method in LEARNS_FROM_SAMPLES:
        pr = planned(ctx, f"prefs:{m.name}", prefs.plan, m)
        inputs["prefs"], context["prefs"] = pr.key, str(pr.out_dir(ctx.cache) / "preferences.csv")
        deps.append(pr.name)
    return ctx.add(Stage(f"align:{m.name}", KIND, VERSION, "dialsum.stages.align:run", inputs, context,
                         child=CHILD, deps=tuple(deps)))


def run(inputs: dict, context: dict, out: Path) -> dict:
    """align_result.json says which weights generation gets, with both scores and the training curve."""
    from dialsum.align.preferences import align_rows, check_train_only, read_preferences
    from dialsum.align.run import align_model

    cfg = ModelConfig.model_validate(context["model"])
    data = load_data(context)
    rows = align_rows(data.train, cfg.align.rows, cfg.align.seed)
    ranked = None
    if context.get("prefs"):
        ranked = read_preferences(Path(context["prefs"]))
        check_train_only(ranked, {d.fname for d in data.train}, Path(context["prefs"]))
    r = align_model(cfg, context["base_path"], weights_of({"trained": context["trained"]}), rows,
                    dev_rows(data, inputs["dev_select"]), dev_rows(data, inputs["dev_report"]), ranked, out,
                    inputs["metric"], callbacks=faults.from_env("align"),
                    gen=GenerateSpec.model_validate(context["generate"]))
    return {k: r.get(k) for k in ("method", "kept", "reason", "weights", "steps", "sft", "aligned", "heldout",
                                  "gain")} | {"result": str(out / "align_result.json")}
