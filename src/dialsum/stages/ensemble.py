"""ensemble: the consensus (members, weights, quality prior) fitted on dev-select, one candidate chosen for every dev
and test dialogue. Falls back to the best single source when nothing beats it on dev-select; the uniform consensus is
scored alongside for the report, and so are two baselines (a constant summary fitted on train, the lead turns). Writes picks.csv (fname, split, summary, source), scores.json, fit.json and
all_scores.csv (every candidate's score under the rule used). Pure selection: runs in the parent process."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.config import EnsembleSpec, MetricSpec
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_candidates
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.stages.common import dev_rows, load_data, score_of
from dialsum.stages.generate import parts_of
from dialsum.stages.keys import data_context, metric_inputs, split_inputs

KIND, VERSION, CHILD = "ensemble", 7, False


def plan(ctx: RunContext, gens: list[Stage]) -> Stage:
    return plan_from(ctx, [g.key for g in gens], [p for g in gens for p in parts_of(ctx, g)],
                     tuple(g.name for g in gens))


def plan_from(ctx: RunContext, gen_keys: list[str], parts: list[str], deps: tuple[str, ...] = ()) -> Stage:
    return ctx.add(Stage(
        "ensemble", KIND, VERSION, "dialsum.stages.ensemble:run",
        {"generate": list(gen_keys), "ensemble": ctx.cfg.ensemble.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {**data_context(ctx), "parts": list(parts)}, deps=deps))


def plan_of_run(ctx: RunContext) -> Stage:
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
    return plan_from(ctx, keys, parts, tuple(f"generate:{m.name}" for m in ctx.cfg.models))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.ensemble import SCORE_COLUMNS, Method, Voting, ensemble, score_rows
    from dialsum.ensemble.baselines import constant_summary, lead_summary

    data = load_data(context)
    metric, spec = MetricSpec.model_validate(inputs["metric"]), EnsembleSpec.model_validate(inputs["ensemble"])
    sel_rows, rep_rows = dev_rows(data, inputs["dev_select"]), dev_rows(data, inputs["dev_report"])
    first: dict[str, dict[str, str]] = {}
    groups: dict[str, list[tuple[str, str]]] = {}
    for c in read_candidates(context["parts"]):
        if c.sample_idx == 0:
            first.setdefault(c.source, {}).setdefault(c.fname, c.text)
        groups.setdefault(c.fname, []).append((c.text, c.source))
    both = lambda preds: {"select": score_of(preds, sel_rows, metric), "report": score_of(preds, rep_rows, metric)}  # noqa: E731
    sources = {src: both(p) for src, p in first.items()}
    fits = spec.fit and not spec.weights  # fixed weights are not refitted, but guarded on dev-select
    fit_refs = {d.fname: [d.summary] for d in sel_rows} if fits or (spec.weights and spec.guard) else None
    res = ensemble(groups, metric.semantics, metric.tokenizer, fit_refs, spec.weights, cv_folds=spec.cv_folds,
                   utility=spec.utility, guard=spec.guard)
    uniform = Voting(tuple(1.0 for _ in res.sources))
    uni = {d.fname: d.texts[uniform.pick(d)] for d in res.dialogues}
    ens = both({f: p.text for f, p in res.picks.items()})
    best_src = max(sources, key=lambda s: (sources[s]["select"]["final"], -list(sources).index(s)))
    rows = [[d.fname, split, res.picks[d.fname].text if d.fname in res.picks else "",
             res.picks[d.fname].source if d.fname in res.picks else ""]
            for split in ("dev", "test") for d in data.split(split)]
    atomic_write_text(out / "picks.csv", csv_text(["fname", "split", "summary", "source"], rows))
    atomic_write_text(out / "all_scores.csv", csv_text(SCORE_COLUMNS, score_rows(res)))
    if res.report is not None:
        atomic_write_json(out / "fit.json", res.report)
    method = res.method
    constant = constant_summary([d.summary for d in data.train], metric.semantics, metric.tokenizer)
    baselines = {"constant": {"text": constant, **both({d.fname: constant for d in data.dev})},
                 "lead": both({d.fname: lead_summary(d.dialogue) for d in data.dev})}
    result = {"picks": str(out / "picks.csv"), "sources": sources, "ensemble": ens, "uniform": both(uni),
              "baselines": baselines,
              "method": method.value, "fit": res.report, "best_source": best_src, "n_sources": len(sources),
              "chosen": res.report["fit_rows_best_single"]["source"] if method is Method.BEST_SINGLE else "ensemble"}
    atomic_write_json(out / "scores.json", result)
    return result
