"""refit: one model retrained for the endgame once everything has been chosen on dev-select: on train + dev (with
`final.pseudo_label`, also the test dialogues with the ensemble's picks as targets) for the optimizer steps its train
stage chose (the best checkpoint's step), scaled by the rows added so it sees the same epochs; no evaluation and no
early stopping, nothing chosen on rows it trains on. SFT only: an align stage is not repeated.

`refit-probe:<model>` is the honest measurement of pseudo-labels: train + dev-report's dialogues with the ensemble's
picks as targets (never their references), so dev-report can score what self-training does to unseen dialogues."""
from __future__ import annotations

import json
import math
from pathlib import Path

from dialsum import faults
from dialsum.config import MetricSpec, ModelConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.io.data import Dialogue
from dialsum.io.files import atomic_write_text, csv_text
from dialsum.stages import train
from dialsum.stages.build import base_of
from dialsum.stages.common import load_data
from dialsum.stages.keys import NOT_FOR_TRAINING, data_context, keyed_model, planned

KIND, VERSION, CHILD = "refit", 1, True


def plan(ctx: RunContext, m: ModelConfig, ens: Stage, probe: bool = False) -> Stage:
    """`refit:<model>` (train + dev, + pseudo-labelled test with final.pseudo_label) or `refit-probe:<model>`."""
    tr = planned(ctx, f"train:{m.name}", train.plan, m)
    base_id, base_path, deps = base_of(ctx, m)
    pseudo = probe or ctx.cfg.final.pseudo_label
    return ctx.add(Stage(
        f"refit-probe:{m.name}" if probe else f"refit:{m.name}", KIND, VERSION, "dialsum.stages.refit:run",
        {"chosen_by": tr.key, "model": keyed_model(m, NOT_FOR_TRAINING), "base": base_id,
         "data": {k: ctx.hashes[k] for k in ("train", "dev", "test")}, "rows": "probe" if probe else "final",
         "dev_report": list(ctx.split.report) if probe else None, "pseudo_from": ens.key if pseudo else None},
        {**data_context(ctx), "base_path": base_path, "model": m.model_dump(mode="json"),
         "trained": str(tr.out_dir(ctx.cache)), "picks": str(ens.out_dir(ctx.cache) / "picks.csv") if pseudo else None,
         "gpus": m.train.nproc, "launcher": m.train.launcher},
        child=CHILD, deps=tuple(dict.fromkeys([*deps, tr.name] + ([ens.name] if pseudo else [])))))


def chosen_steps(train_dir: Path) -> int:
    """The optimizer step of the checkpoint the train stage kept (the earliest best dev-select score), else its
    last step (no evaluation ran)."""
    res = json.loads((Path(train_dir) / "train_result.json").read_text(encoding="utf-8"))
    scored = [h for h in res.get("dev_history", []) if h.get("eval_dev_final") is not None]
    if scored:
        best = max(h["eval_dev_final"] for h in scored)
        return int(min(h["step"] for h in scored if h["eval_dev_final"] == best))
    return int(res["global_step"])


def refit_rows(inputs: dict, context: dict, data) -> tuple[list[Dialogue], int]:
    """The rows a refit trains on, and how many of them carry a pseudo-label (an ensemble pick as target)."""
    from dialsum.io.candidates import read_split_table

    picks = read_split_table(Path(context["picks"])) if context.get("picks") else {}
    if inputs["rows"] == "probe":
        report = set(inputs["dev_report"])
        extra = [Dialogue(d.fname, d.dialogue, picks["dev"][d.fname][0], d.topic) for d in data.dev
                 if d.fname in report]
        return data.train + extra, len(extra)
    pseudo = [Dialogue(d.fname, d.dialogue, picks["test"][d.fname][0], d.topic) for d in data.test] if picks else []
    return data.train + data.dev + pseudo, len(pseudo)


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.models.training import train_model

    cfg = ModelConfig.model_validate(context["model"])
    data = load_data(context)
    rows, pseudo = refit_rows(inputs, context, data)
    chosen = chosen_steps(Path(context["trained"]))
    steps = max(1, math.ceil(chosen * len(rows) / len(data.train)))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pseudo_rows.csv", csv_text(["fname", "summary"], [[d.fname, d.summary]
                                                                               for d in rows[len(rows) - pseudo:]]
                                                        if pseudo else []))
    r = train_model(cfg, context["base_path"], rows, [], out, MetricSpec(), resume=True, callbacks=faults.from_env(),
                    fixed_steps=steps)
    return {"adapter": str(r.weights_dir), "steps": steps, "chosen_steps": chosen, "rows": len(rows),
            "train_rows": len(data.train), "pseudo_rows": pseudo, "first_loss": r.losses[0] if r.losses else None,
            "last_loss": r.losses[-1] if r.losses else None}
