"""train: one model fine-tuned (QLoRA, LoRA or full) on train, its best checkpoint chosen on dev-select only.
Keyed by the model fields that change the weights, the base model's identity, the data and the dev split."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum import faults
from dialsum.config import MetricSpec, ModelConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.stages.build import base_of
from dialsum.stages.common import callback_of, dev_rows, load_data
from dialsum.stages.keys import NOT_FOR_TRAINING, data_context, keyed_model, metric_inputs

KIND, VERSION, CHILD = "train", 5, True


def plan(ctx: RunContext, m: ModelConfig) -> Stage:
    base_id, base_path, deps = base_of(ctx, m)
    return ctx.add(Stage(
        f"train:{m.name}", KIND, VERSION, "dialsum.stages.train:run",
        {"model": keyed_model(m, NOT_FOR_TRAINING), "base": base_id, "train": ctx.hashes["train"],
         "dev": ctx.hashes["dev"], "dev_select": list(ctx.split.select), "metric": metric_inputs(ctx.cfg)},
        {**data_context(ctx), "base_path": base_path, "model": m.model_dump(mode="json"),
         "gpus": m.train.nproc, "launcher": m.train.launcher},
        child=CHILD, deps=tuple(deps)))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.models.preview import check_truncation, from_path
    from dialsum.models.training import train_model

    cfg = ModelConfig.model_validate(context["model"])
    data = load_data(context)
    on_evaluate = callback_of(context.get("on_evaluate"))  # e.g. a tuning trial's reporter (its pruner may stop it)
    out.mkdir(parents=True, exist_ok=True)
    check_truncation(from_path(context["base_path"], cfg, cfg.revision), cfg,
                     {"train": data.train, "dev": data.dev, "test": data.test}, out)  # before any training
    r = train_model(cfg, context["base_path"], data.train, dev_rows(data, inputs["dev_select"]), out,
                    MetricSpec(**inputs["metric"]), resume=True, on_evaluate=on_evaluate, callbacks=faults.from_env())
    trunc = json.loads((out / "truncation.json").read_text(encoding="utf-8"))
    return {"adapter": str(r.weights_dir), "best_dev_select": r.best_dev_final, "truncation": trunc,
            "dev_history": r.dev_history, "first_loss": r.losses[0] if r.losses else None,
            "last_loss": r.losses[-1] if r.losses else None}
