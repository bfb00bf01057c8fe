"""devscore: greedy decoding of given dev rows with a model's trained weights (the aligned ones when alignment kept
them), scored with the leaderboard metric: a tuning trial's value. Never part of a run's plan."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.stages import align, train
from dialsum.stages.build import base_of
from dialsum.stages.common import dev_rows, load_data, score_of, weights_of
from dialsum.stages.keys import data_context, metric_inputs, planned

KIND, VERSION, CHILD = "devscore", 2, True
DECODING_FIELDS = {"prompt_format", "system_prompt", "instruction", "max_input_tokens", "max_new_tokens", "precision"}


def plan(ctx: RunContext, m: ModelConfig, rows: list[str], tag: str) -> Stage:
    tr = planned(ctx, f"train:{m.name}", train.plan, m)
    base_id, base_path, _ = base_of(ctx, m)
    upstream, dep, where = {"train": tr.key}, tr.name, {}
    if m.align.method != "none":  # score what generation would use: the aligned weights when kept
        al = planned(ctx, f"align:{m.name}", align.plan, m)
        upstream, dep, where = {"align": al.key}, al.name, {"aligned": str(al.out_dir(ctx.cache))}
    return Stage(f"devscore:{m.name}:{tag}", KIND, VERSION, "dialsum.stages.devscore:run",
                 {**upstream, "base": base_id, "rows": rows, "dev": ctx.hashes["dev"],
                  "metric": metric_inputs(ctx.cfg), "model": m.model_dump(mode="json", include=DECODING_FIELDS)},
                 {**data_context(ctx), "base_path": base_path, "model": m.model_dump(mode="json"),
                  "trained": str(tr.out_dir(ctx.cache)), **where}, child=CHILD, deps=(dep,))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.models.encoding import encode_input
    from dialsum.models.generation import HFEngine

    cfg = ModelConfig.model_validate(context["model"])
    rows = dev_rows(load_data(context), inputs["rows"])
    engine = HFEngine(cfg, context["base_path"], weights_of(context), GenerateSpec().batch_size)
    outs = engine.run([encode_input(engine.tokenizer, d.dialogue, cfg) for d in rows], DecodingSpec(name="greedy"),
                      None)
    return {"score": score_of({d.fname: o[0][0] for d, o in zip(rows, outs)}, rows, inputs["metric"]),
            "n": len(rows)}
