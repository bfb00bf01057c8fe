"""final: the endgame's submission. The refit models' test candidates are chosen among by the ensemble's voting as it
was fitted on dev-select (members, weights, quality prior, or its fallback to one source), post-processed by the
rules and cap fitted on dev-select, validated and written as submissions/<run-id>-final.csv (-final-pseudo.csv
with pseudo-labels) beside the run's own submission, never over it. No dev number exists for the refit models.

With `final.pseudo_label`, the probe models' dev candidates (trained with dev-report's pseudo-labels) go through the
same choices and are scored on dev-report, paired with the run's own final dev-report outputs: what self-training
did to dialogues whose references it never saw. Pure selection: runs in the parent process."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.config import EnsembleSpec, MetricSpec
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.io.candidates import read_candidates, read_split_table
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text
from dialsum.stages.common import dev_rows, load_data, score_of
from dialsum.stages.generate import parts_of
from dialsum.stages.keys import data_context, metric_inputs, split_inputs

KIND, VERSION, CHILD = "final", 1, False


def plan(ctx: RunContext, ens: Stage, post: Stage, gens: list[Stage], probes: list[Stage]) -> Stage:
    name = (f"{ctx.run_id}-smoke" if ctx.cfg.data.limit else ctx.run_id) + "-final" + (
        "-pseudo" if ctx.cfg.final.pseudo_label else "")  # a smoke run never writes a real-looking submission
    return ctx.add(Stage(
        "final", KIND, VERSION, "dialsum.stages.final:run",
        {"ensemble": ens.key, "postprocess": post.key, "generate": [g.key for g in gens],
         "probe": [p.key for p in probes], "run_id": name,
         "submissions_dir": str(Path(ctx.cfg.submissions_dir).resolve()), "sample": ctx.hashes["sample"],
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {**data_context(ctx), "ensemble": ens.inputs["ensemble"], "fit": str(ens.out_dir(ctx.cache) / "fit.json"),
         "fitted": str(post.out_dir(ctx.cache) / "fitted.json"), "final": str(post.out_dir(ctx.cache) / "final.csv"),
         "parts": [p for g in gens for p in parts_of(ctx, g)],
         "probe_parts": [p for g in probes for p in parts_of(ctx, g)]},
        deps=tuple(dict.fromkeys([ens.name, post.name, *(g.name for g in gens), *(p.name for p in probes)]))))


def choose(parts: list[str], split_fnames: list[str], context: dict, metric: MetricSpec) -> tuple[dict, dict]:
    """Per dialogue of `split_fnames`: the post-processed pick under the dev-select choices, and its source."""
    from dialsum.ensemble.consensus import Voting, prepare, rule_from_dict, source_weight
    from dialsum.postprocess import FittedPostprocess
    from dialsum.stages.postprocess import FALLBACK_SUMMARY

    wanted = set(split_fnames)
    groups: dict[str, list[tuple[str, str]]] = {}
    for c in read_candidates(parts):
        if c.fname in wanted:
            groups.setdefault(c.fname, []).append((c.text, c.source))
    sources = list(dict.fromkeys(s for g in groups.values() for _, s in g))
    spec = EnsembleSpec.model_validate(context["ensemble"])
    fit = Path(context["fit"])
    voting = (rule_from_dict(json.loads(fit.read_text(encoding="utf-8")), sources) if fit.is_file()
              else Voting(tuple(source_weight(s, spec.weights) for s in sources)))
    post = FittedPostprocess.from_dict(json.loads(Path(context["fitted"]).read_text(encoding="utf-8")))
    texts, picked = {}, {}
    for d in prepare(groups, sources, metric.semantics, metric.tokenizer, None, spec.utility):
        i = voting.pick(d)
        text = post.apply(d.texts[i])
        texts[d.fname], picked[d.fname] = (text if text.strip() else FALLBACK_SUMMARY), sources[d.sources[i]]
    return texts, picked


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.io.submission import write_submission

    data = load_data(context)
    metric = MetricSpec.model_validate(inputs["metric"])
    test, sources = choose(context["parts"], [d.fname for d in data.test], context, metric)
    atomic_write_text(out / "final_test.csv", csv_text(["fname", "summary", "source"],
                                                       [[d.fname, test[d.fname], sources[d.fname]] for d in data.test]))
    path = write_submission(Path(inputs["submissions_dir"]), inputs["run_id"],
                            Path(context["data_dir"]) / "sample_submission.csv", test, data.submission_fnames)
    result = {"path": str(path), "sources": {s: list(sources.values()).count(s) for s in set(sources.values())}}
    if context["probe_parts"]:
        result["pseudo_label_probe"] = probe_result(inputs, context, data, metric)
    atomic_write_json(out / "final.json", result)
    return result


def probe_result(inputs: dict, context: dict, data, metric: MetricSpec) -> dict:
    """The probe models' dev-report rows through the dev-select choices, scored against the references and paired
    with the run's own final dev-report outputs (also what bench/pseudo_label_probe.py prints)."""
    from dialsum.scoring.bootstrap import compare

    rep_rows = dev_rows(data, inputs["dev_report"])
    probe, _ = choose(context["probe_parts"], [d.fname for d in rep_rows], context, metric)
    run_final = {f: t for f, (t, _) in read_split_table(Path(context["final"]))["dev"].items()}
    with_pl, without = score_of(probe, rep_rows, metric), score_of(run_final, rep_rows, metric)
    c = compare(with_pl["per_dialogue"], without["per_dialogue"])
    return {"with": with_pl["final"], "without": without["final"], "diff": c.diff, "ci_low": c.ci_low,
            "ci_high": c.ci_high, "p_value": c.p_value, "n": c.n}
