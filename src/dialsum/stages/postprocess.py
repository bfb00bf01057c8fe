"""postprocess: the post-processor fitted on dev-select picks (each rule and cap kept only for a held-out gain over
one standard error), applied to every row; an empty result gets a fixed sentence (logged and counted). Writes
final.csv and fitted.json. Pure: runs in the parent process."""
from __future__ import annotations

import logging
from pathlib import Path

from dialsum.config import MetricSpec, PostprocessSpec
from dialsum.engine.core import Stage
from dialsum.logs import log
from dialsum.engine.run_folder import RunContext
from dialsum.io.candidates import read_split_table
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.stages.common import dev_rows, load_data, score_of
from dialsum.stages.keys import data_context, metric_inputs, split_inputs

KIND, VERSION, CHILD = "postprocess", 4, False
FALLBACK_SUMMARY = "#Person1#과 #Person2#가 대화를 나눕니다."


def plan(ctx: RunContext, ens: Stage) -> Stage:
    return ctx.add(Stage(
        "postprocess", KIND, VERSION, "dialsum.stages.postprocess:run",
        {"ensemble": ens.key, "postprocess": ctx.cfg.postprocess.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {**data_context(ctx), "picks": str(ens.out_dir(ctx.cache) / "picks.csv")}, deps=(ens.name,)))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.postprocess import LengthCap, PostProcessor
    from dialsum.scoring.metric import Metric

    data = load_data(context)
    metric, pp = MetricSpec.model_validate(inputs["metric"]), PostprocessSpec.model_validate(inputs["postprocess"])
    picks = read_split_table(Path(context["picks"]))
    sel_rows, rep_rows = dev_rows(data, inputs["dev_select"]), dev_rows(data, inputs["dev_report"])
    fixed = LengthCap(pp.max_sentences, pp.max_morphemes) if (pp.max_sentences or pp.max_morphemes) else None
    proc = PostProcessor(tuple(pp.rules), pp.ablate, pp.tune_length_cap, fixed, metric.tokenizer)
    fitted = proc.fit([picks["dev"][d.fname][0] for d in sel_rows], [[d.summary] for d in sel_rows],
                      Metric.of(metric).rows)
    rows, final, empty = [], {}, {"dev": [], "test": []}
    for split in ("dev", "test"):
        for d in data.split(split):
            text = fitted.apply(picks[split][d.fname][0])
            if not text.strip():
                empty[split].append(d.fname)
                text = FALLBACK_SUMMARY
            final.setdefault(split, {})[d.fname] = text
            rows.append([d.fname, split, text])
    for split, names in empty.items():
        if names:
            log(f"postprocess: {len(names)} empty {split} output(s) replaced by {FALLBACK_SUMMARY!r}: {names[:5]}",
                level=logging.WARNING)
    atomic_write_text(out / "final.csv", csv_text(["fname", "split", "summary"], rows))
    atomic_write_json(out / "fitted.json", fitted.to_dict())
    return {"final": str(out / "final.csv"), "fitted": fitted.to_dict(), "describe": fitted.describe(),
            "select": score_of(final["dev"], sel_rows, metric), "report": score_of(final["dev"], rep_rows, metric),
            "empty_replaced": {k: len(v) for k, v in empty.items()}}
