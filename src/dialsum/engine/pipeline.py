"""Running a run: every stage of the plan in order through the engine, then the run's report.

Finished stages (same key) are reused, the rest computed; `--force`/`--from-stage` recompute what they name and
everything downstream (dialsum.engine.graph.forced_set).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dialsum.config import ModelConfig, RunConfig
from dialsum.engine.core import Engine, Stage
from dialsum.engine.logs import log
from dialsum.engine.explorer import explorer_data
from dialsum.engine.graph import forced_set, full_plan, model_stages, select_models
from dialsum.engine.runs import RunContext, open_run
from dialsum.engine.tracking import track_run
from dialsum.io.candidates import read_split_table
from dialsum.io.files import atomic_write_json
from dialsum.io.html_report import write_html
from dialsum.io.report import write_report
from dialsum.scoring.bootstrap import compare, interval


def preflight(models: list[ModelConfig]) -> None:
    """Checks that need no model loaded: hub ids reachable or cached, the hardware able to hold the model."""
    from dialsum.models.loading import check_feasible, check_source

    for m in models:
        if m.path is not None:
            check_source(m.path)
        check_feasible(m)


def engine_for(ctx: RunContext, in_process: bool = False) -> Engine:
    eng = Engine(ctx.cache, ctx.run_dir, in_process=in_process)
    eng.manifest.update({"run_id": ctx.run_id, "data_dir": str(ctx.data_dir), "backend": ctx.backend,
                         "cache": str(ctx.cache.resolve())})
    return eng


def run_stages(eng: Engine, stages: list[Stage], forced: set[str] = frozenset()) -> dict[str, dict]:
    results = {}
    for s in stages:
        results[s.name] = eng.run(s, force=s.name in forced)
    return results


def run_pipeline(cfg: RunConfig, data_dir: Path | None = None, run_id: str | None = None,
                 backend: str | None = None, only_models: list[str] | None = None, from_stage: str | None = None,
                 force: list[str] | None = None, sets: list[str] | None = None) -> dict:
    """Every stage in order; finished stages (same key) are reused, the rest computed."""
    # `--only-model`: a lock of its own, so processes (shells, GPUs, machines sharing output_dir) on other models
    # proceed in parallel; a plain run holds the folder's lock
    scope = "models-" + "+".join(sorted(only_models)) if only_models else None
    ctx = open_run(cfg, data_dir, run_id, backend, sets=sets, lock_scope=scope)
    log(f"run {ctx.run_id} in {ctx.run_dir} (cache {ctx.cache})")
    models = select_models(cfg, only_models)
    preflight(models)
    eng = engine_for(ctx)
    if only_models:
        stages = model_stages(ctx, models)
        results = run_stages(eng, stages, forced_set(stages, force or [], from_stage))
        eng.set("parent_imported_torch", "torch" in sys.modules)
        return {"run_id": ctx.run_id, "run_dir": ctx.run_dir, "ran": eng.ran, "results": results,
                "submission": None, "report": None, "rows": []}
    stages = full_plan(ctx)
    results = run_stages(eng, stages, forced_set(stages, force or [], from_stage))
    report, rows = write_run_report(ctx, stages, results)
    comparisons = json.loads((ctx.run_dir / "scores.json").read_text(encoding="utf-8")).get("comparisons", [])
    track_run(cfg.tracking, ctx.run_id, ctx.run_dir, Path(cfg.output_dir), eng.manifest["stages"], rows, comparisons)
    eng.set("parent_imported_torch", "torch" in sys.modules)
    log(f"report: {report}")
    return {"run_id": ctx.run_id, "run_dir": ctx.run_dir, "submission": Path(results["submit"]["path"]),
            "report": report, "rows": rows, "ran": eng.ran, "results": results}


def truncation_lines(stages: list[Stage], results: dict[str, dict]) -> list[str]:
    """The report's table of what each model's tokenizer truncates (measured by its train stage)."""
    out = ["", "## Truncation (each model's own tokenizer, before training)", "",
           "| model | split | rows | dialogues > max_input_tokens | references > max_new_tokens |", "|---|---|---:|---:|---:|"]
    problems = []
    for s in stages:
        t = results.get(s.name, {}).get("truncation") if s.kind == "train" else None
        if not t:
            continue
        for r in t["splits"]:
            summ = "-" if r["summary_truncated"] is None else f"{r['summary_truncated']:.2%}"
            out.append(f"| {r['model']} | {r['split']} | {r['rows']} | {r['dialogue_truncated']:.2%} "
                       f"(> {r['max_input_tokens']}) | {summ} (> {r['max_new_tokens']}) |")
        problems += t["problems"]
    return out + ([""] + [f"**Warning:** {p}" for p in problems] if problems else [])


def align_rows(model: str, r: dict) -> list[dict]:
    """The report's SFT row and aligned row of one model (greedy, on the same dev-select and dev-report rows)."""
    verdict = "kept" if r.get("kept") else "not kept: SFT generates"
    out = [{"stage": "align", "detail": f"{model}: SFT (greedy)", **(r.get("sft") or {})}]
    out.append({"stage": "align", "detail": f"{model}: aligned by {r['method']} ({verdict})",
                **(r.get("aligned") or {"select": None, "report": None})})
    return out


def align_lines(run_dir: Path, stages: list[Stage], results: dict[str, dict]) -> list[str]:
    """The report's alignment table and the plot of each method's training curve."""
    from dialsum.io.report import curve_chart

    done = [(s.name.split(":", 1)[1], results[s.name]) for s in stages if s.kind == "align" and s.name in results]
    if not done:
        return []
    out = ["", "## Alignment after SFT (reward = the leaderboard metric; kept only when its dev-select gain over SFT "
           "exceeds one standard error, both generated as the generate stage generates)", "",
           "| model | method | steps | held-out objective: before → after | SFT select | aligned select | "
           "SFT report | aligned report | decision |", "|---|---|---:|---|---:|---:|---:|---:|---|"]
    curves = {}
    for model, r in done:
        held = r.get("heldout") or {}
        objective = ", ".join(f"{k} {held['before'][k]:.4f} → {held['after'][k]:.4f}" for k in held.get("after", {})
                              if isinstance(held["after"].get(k), float) and isinstance(held["before"].get(k), float))
        fin = lambda sc, part: f"{sc[part]['final']:.4f}" if sc and sc.get(part) else "—"  # noqa: E731
        out.append(f"| {model} | {r['method']} | {r.get('steps', 0)} | {objective or '—'} | "
                   f"{fin(r.get('sft'), 'select')} | {fin(r.get('aligned'), 'select')} | {fin(r.get('sft'), 'report')} | "
                   f"{fin(r.get('aligned'), 'report')} | {r.get('reason', '')} |")
        res_file = Path(r.get("result", ""))
        if res_file.is_file():
            curves[f"{model} ({r['method']})"] = json.loads(res_file.read_text(encoding="utf-8")).get("curve", [])
    png = curve_chart(run_dir / "align.png", curves)
    return out + (["", f"![alignment curves]({png.name})"] if png else [])


def with_intervals(row: dict) -> dict:
    """A report row with its dev-report 95 % bootstrap interval (ci_low, ci_high), per-dialogue scores dropped."""
    out = dict(row)
    for part in ("select", "report"):
        sc = row.get(part)
        if sc and "per_dialogue" in sc:
            sc = {k: v for k, v in sc.items() if k != "per_dialogue"}
            if part == "report":
                low, high = interval(row[part]["per_dialogue"])
                sc |= {"ci_low": low, "ci_high": high}
            out[part] = sc
    return out


def compare_lines(ens: dict, post: dict) -> list[dict]:
    """The report's "A vs B" lines, each a paired bootstrap over the same dev-report dialogues: the ensemble against
    the best single source (chosen on dev-select) and the uniform consensus, post-processing against its input."""
    best = ens["best_source"]
    pairs = [("ensemble", ens["ensemble"], f"best single source ({best})", ens["sources"][best]),
             ("ensemble", ens["ensemble"], "uniform consensus", ens["uniform"]),
             ("post-processed", post, "ensemble picks (before post-processing)", ens["ensemble"])]
    out = []
    for a_name, a, b_name, b in pairs:
        c = compare(a["report"]["per_dialogue"], b["report"]["per_dialogue"])
        out.append({"a_name": a_name, "b_name": b_name, **c.as_dict()})
    return out


def below_best_single(c: dict) -> str:
    """The report's sentence when the ensemble scores under the best single source on dev-report (c: that paired
    comparison), saying whether dev-report can tell them apart; nothing when it does not score under it."""
    if c["diff"] >= 0:
        return ""
    verdict = ("within noise: dev-report cannot tell them apart" if c["ci_high"] >= 0 else
               "a real loss: the choice made on dev-select did not hold up on unseen dialogues")
    return (f" The ensemble is below the best single source on dev-report by {-c['diff']:.4f} (paired 95 % interval "
            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]): {verdict}.")


def write_run_report(ctx: RunContext, stages: list[Stage], results: dict[str, dict]) -> tuple[Path, list[dict]]:
    ens, post = results["ensemble"], results["postprocess"]
    rows = []
    for s in stages:
        if s.kind == "train":
            r = results[s.name]
            name = s.name.split(":", 1)[1]
            greedy = next((v for k, v in ens["sources"].items() if k.startswith(f"{name}/") and "greedy" in k), None)
            rows.append({"stage": "train", "detail": f"{name}: best checkpoint (dev-select subset); report = its greedy output",
                         "select": {"final": r["best_dev_select"]} if r.get("best_dev_select") is not None else None,
                         "report": greedy["report"] if greedy else None})
        elif s.kind == "align":
            rows += align_rows(s.name.split(":", 1)[1], results[s.name])
    for src, sc in ens["sources"].items():
        rows.append({"stage": "generate", "detail": f"{src} (first candidate)", **sc})
    fit = ens.get("fit")
    if not fit:
        how = f"{ens['method']} (not fitted)"
    elif ens["method"] == "fitted consensus":
        how = f"fitted consensus on dev-select ({len(fit['members'])} member(s), {fit['params']}; chosen by {fit['chosen_by']})"
    elif ens["method"] == "weighted consensus":
        how = f"the configured source weights, kept by the guard on dev-select (chosen by {fit['chosen_by']})"
    elif ens["method"] == "best single source":
        how = f"fell back to the best single source {ens['chosen']} (chosen by {fit['chosen_by']} on dev-select)"
    else:
        how = (f"uniform consensus: the fitted one did not beat it on held-out dev-select folds "
               f"(chosen by {fit['chosen_by']})")
    rows.append({"stage": "ensemble", "detail": f"uniform MBR over {ens['n_sources']} sources (reference)",
                 **ens["uniform"]})
    rows.append({"stage": "ensemble", "detail": how, **ens["ensemble"]})
    rows.append({"stage": "postprocess", "detail": post["describe"], "select": post["select"], "report": post["report"]})
    fitted = post["fitted"]
    comparisons = compare_lines(ens, post)
    extra = [f"Dev split: {len(ctx.split.select)} dev-select rows, {len(ctx.split.report)} dev-report rows "
             f"(`dev_select.csv`, `dev_report.csv`; seeded, stratified by topic).", "",
             f"Ensemble: {how}. Best single source on dev-select: {ens['best_source']} (dev-report "
             f"{ens['sources'][ens['best_source']]['report']['final']:.4f}); the ensemble on dev-report: "
             f"{ens['ensemble']['report']['final']:.4f}."
             + (f" {fit['cross_validation']['folds']}-fold estimate inside dev-select: fitted "
                f"{fit['cross_validation']['fitted']:.4f}, best single {fit['cross_validation']['best_single']:.4f}, "
                f"uniform {fit['cross_validation']['uniform']:.4f}." if fit and fit.get("cross_validation") else "")
             + below_best_single(comparisons[0]), "",
             "## Post-processing (fitted on dev-select; a rule or cap is kept only when its held-out gain exceeds one "
             "standard error)", "",
             "| rule | on | off | delta | held-out gain | SE | enabled | why |", "|---|---:|---:|---:|---:|---:|---|---|"]
    extra += [f"| {g['rule']} | {g['on']:.4f} | {g['off']:.4f} | {g['on'] - g['off']:+.4f} | {g.get('gain', 0):+.4f} | "
              f"{g.get('se', 0):.4f} | {'yes' if g['enabled'] else 'no'} | {g.get('why', '')} |" for g in fitted["gains"]]
    extra += ["", "## Is the difference real? (paired bootstrap over dev-report dialogues, 95 % intervals)", "",
              "| A | B | A | B | A − B [95 % interval] | p (permutation) |", "|---|---|---:|---:|---|---:|"]
    extra += [f"| {c['a_name']} | {c['b_name']} | {c['a']:.4f} | {c['b']:.4f} | {c['diff']:+.4f} "
              f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3f} |" for c in comparisons]
    extra += ["", "An interval that contains 0 means dev-report cannot tell A from B: prefer the simpler one."]
    emp = post.get("empty_replaced", {})
    extra += ["", f"Empty outputs replaced by a fixed sentence: dev {emp.get('dev', 0)}, test {emp.get('test', 0)}.",
              "", "## Stages", "", "| stage | key | this run |", "|---|---|---|"]
    man = json.loads((ctx.run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
    extra += [f"| {s.name} | `{s.key}` | {man.get(s.name, {}).get('status', '?')} |" for s in stages]
    extra += truncation_lines(stages, results)
    extra += align_lines(ctx.run_dir, stages, results)
    extra += ["", f"Submission: `{results['submit']['path']}`"]
    picks = read_split_table(Path(ens["picks"]))
    pick_sources = {f: src for f, (_, src) in picks.get("dev", {}).items()}
    rows = [with_intervals(r) for r in rows]
    path = write_report(ctx.run_dir, ctx.run_id, rows, pick_sources, extra)
    atomic_write_json(ctx.run_dir / "scores.json", {"rows": rows, "ensemble_chosen": ens["chosen"],
                                                    "comparisons": comparisons})
    write_html(ctx.run_dir / "report.html", explorer_data(ctx.run_dir))
    return path, rows
