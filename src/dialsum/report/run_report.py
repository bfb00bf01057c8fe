"""The run report: its typed rows (one per scored stage output, dev-select and dev-report with intervals), the
paired comparisons, and report.md / scores.json / report.html written from a run's stage results. Knows nothing of
the engine: it is given each stage's name, kind, key and status, and the results."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dialsum.io.candidates import read_split_table
from dialsum.io.files import atomic_write_json
from dialsum.report.charts import curve_chart
from dialsum.report.explorer import explorer_data
from dialsum.report.html import write_html
from dialsum.report.markdown import write_report
from dialsum.scoring.bootstrap import compare, interval


@dataclass(frozen=True)
class StageLine:
    """What the report says of a stage: its name (`<kind>:<model>` or `<kind>`), key and this run's status."""
    name: str
    key: str
    status: str = "?"

    @property
    def kind(self) -> str:
        return self.name.partition(":")[0]


@dataclass
class ReportRow:
    """One scored output: its stage, what it is, and its dev-select and dev-report scores (dicts of final, R1/R2/RL,
    and, on dev-report, the 95 % interval)."""
    stage: str
    detail: str
    select: dict | None = None
    report: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def truncation_lines(stages: list[StageLine], results: dict[str, dict]) -> list[str]:
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


def align_rows(model: str, r: dict) -> list[ReportRow]:
    """The report's SFT row and aligned row of one model (greedy, on the same dev-select and dev-report rows)."""
    verdict = "kept" if r.get("kept") else "not kept: SFT generates"
    sft, aligned = r.get("sft") or {}, r.get("aligned") or {}
    return [ReportRow("align", f"{model}: SFT (greedy)", sft.get("select"), sft.get("report")),
            ReportRow("align", f"{model}: aligned by {r['method']} ({verdict})", aligned.get("select"),
                      aligned.get("report"))]


def align_lines(run_dir: Path, stages: list[StageLine], results: dict[str, dict]) -> list[str]:
    """The report's alignment table and the plot of each method's training curve."""
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


def with_intervals(row: ReportRow) -> ReportRow:
    """A report row with its dev-report 95 % bootstrap interval (ci_low, ci_high), per-dialogue scores dropped."""
    out = {}
    for part in ("select", "report"):
        sc = getattr(row, part)
        if sc and "per_dialogue" in sc:
            sc = {k: v for k, v in sc.items() if k != "per_dialogue"}
            if part == "report":
                low, high = interval(getattr(row, part)["per_dialogue"])
                sc |= {"ci_low": low, "ci_high": high}
        out[part] = sc
    return ReportRow(row.stage, row.detail, **out)


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


@dataclass
class RunReport:
    """What a run's report says, as data: report.md's path, its rows (in pipeline order) and the comparisons."""
    path: Path
    rows: list[ReportRow]
    comparisons: list[dict]


def baseline_rows(ens: dict) -> list[ReportRow]:
    """What "learned nothing" scores (the ensemble stage's baselines; none in a result cached before they existed)."""
    b = ens.get("baselines") or {}
    names = {"constant": "constant summary fitted on train (the train summary closest to the others)",
             "lead": "lead: the dialogue's first two turns"}
    return [ReportRow("baseline", names[k], b[k]["select"], b[k]["report"]) for k in names if k in b]


def below_baselines(rows: list[ReportRow], baselines: list[ReportRow]) -> str:
    """The report's line naming every source and the final that do not beat the best baseline on dev-report."""
    if not baselines:
        return ""
    best = max(baselines, key=lambda r: r.report["final"])
    under = [r.detail.split(" (")[0] if r.stage == "generate" else "the final (post-processed)" for r in rows
             if r.stage in ("generate", "postprocess") and r.report and r.report["final"] <= best.report["final"]]
    if not under:
        return (f"Every source and the final beat both baselines on dev-report (best baseline: {best.detail.split(':')[0]}"
                f" {best.report['final']:.4f}).")
    return (f"**Not above the best baseline** ({best.detail.split(' (')[0].split(':')[0]}, dev-report "
            f"{best.report['final']:.4f}): {', '.join(under)}.")


def final_lines(stages: list[StageLine], results: dict[str, dict], post: dict) -> list[str]:
    """The "Final refit" section (with `final.refit`): what was retrained on what, and that no dev number exists."""
    fin = results.get("final")
    if not fin:
        return []
    rep = post["report"]
    low, high = interval(rep["per_dialogue"])
    out = ["", "## Final refit", "",
           f"Every model retrained on train + dev for its chosen optimizer steps (scaled by the rows added), the "
           f"ensemble's voting and the post-processing fitted on dev-select applied unchanged: `{fin['path']}`. "
           f"**No dev number exists for the refit models** (they trained on every dev row); the estimate is the "
           f"selection run's dev-report score, {rep['final']:.4f} [{low:.4f}, {high:.4f}]. Alignment is not "
           f"repeated: a refit model is SFT only.", "",
           "| model | chosen step | refit steps | rows (train + dev + pseudo) |", "|---|---:|---:|---|"]
    for s in stages:
        if s.kind == "refit" and s.name.startswith("refit:"):
            r = results[s.name]
            out.append(f"| {s.name.split(':', 1)[1]} | {r['chosen_steps']} | {r['steps']} | {r['train_rows']} + "
                       f"{r['rows'] - r['train_rows'] - r['pseudo_rows']} + {r['pseudo_rows']} |")
    probe = fin.get("pseudo_label_probe")
    if probe:
        out += ["", f"Pseudo-labels measured on dev-report (each model retrained on train + dev-report's dialogues "
                    f"with the ensemble's picks as targets, never their references; the same choices applied): "
                    f"{probe['with']:.4f} with vs {probe['without']:.4f} without, difference {probe['diff']:+.4f} "
                    f"[{probe['ci_low']:+.4f}, {probe['ci_high']:+.4f}] (paired bootstrap, {probe['n']} dialogues)"
                    + ("; the interval contains 0: no gain shown, prefer the refit without pseudo-labels."
                       if probe["ci_low"] <= 0 <= probe["ci_high"] else ".")]
    return out


def write_run_report(run_dir: Path, run_id: str, split_sizes: tuple[int, int], stages: list[StageLine],
                     results: dict[str, dict], smoke: int | None = None) -> RunReport:
    """report.md, scores.json and report.html of a finished run, from its stages' results."""
    ens, post = results["ensemble"], results["postprocess"]
    baselines = baseline_rows(ens)
    rows = list(baselines)
    for s in stages:
        if s.kind == "train":
            r = results[s.name]
            name = s.name.split(":", 1)[1]
            greedy = next((v for k, v in ens["sources"].items() if k.startswith(f"{name}/") and "greedy" in k), None)
            rows.append(ReportRow("train", f"{name}: best checkpoint (dev-select: the first train.eval_subset "
                                  f"dev-select rows, scored at each evaluation); report = its greedy output",
                                  {"final": r["best_dev_select"]} if r.get("best_dev_select") is not None else None,
                                  greedy["report"] if greedy else None))
        elif s.kind == "align":
            rows += align_rows(s.name.split(":", 1)[1], results[s.name])
    for src, sc in ens["sources"].items():
        rows.append(ReportRow("generate", f"{src} (first candidate)", sc["select"], sc["report"]))
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
    rows.append(ReportRow("ensemble", f"uniform MBR over {ens['n_sources']} sources (reference)",
                          ens["uniform"]["select"], ens["uniform"]["report"]))
    rows.append(ReportRow("ensemble", how, ens["ensemble"]["select"], ens["ensemble"]["report"]))
    rows.append(ReportRow("postprocess", post["describe"], post["select"], post["report"]))
    fitted = post["fitted"]
    comparisons = compare_lines(ens, post)
    notice = (f"**Smoke run, not a real submission** (`data.limit` {smoke}: at most {smoke} rows of each split, tiny "
              f"stand-ins pre-trained at most {smoke} steps): it checks that every stage runs; its numbers say nothing "
              f"about the models, and its `-smoke.csv` covers only {smoke} test rows." if smoke else "")
    extra = [f"Dev split: {split_sizes[0]} dev-select rows, {split_sizes[1]} dev-report rows "
             f"(`dev_select.csv`, `dev_report.csv`; seeded, stratified by topic).", "",
             below_baselines(rows, baselines), "",
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
    extra += [f"| {s.name} | `{s.key}` | {s.status} |" for s in stages]
    extra += truncation_lines(stages, results)
    extra += align_lines(run_dir, stages, results)
    extra += ["", f"Submission: `{results['submit']['path']}`"]
    extra += final_lines(stages, results, post)
    picks = read_split_table(Path(ens["picks"]))
    pick_sources = {f: src for f, (_, src) in picks.get("dev", {}).items()}
    rows = [with_intervals(r) for r in rows]
    dicts = [r.as_dict() for r in rows]
    path = write_report(run_dir, run_id, dicts, pick_sources, extra, notice)
    atomic_write_json(run_dir / "scores.json", {"rows": dicts, "ensemble_chosen": ens["chosen"],
                                                "comparisons": comparisons})
    write_html(run_dir / "report.html", explorer_data(run_dir))
    return RunReport(path, rows, comparisons)
