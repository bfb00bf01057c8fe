"""The stage functions: `fn(inputs, context, out_dir) -> result`, one per stage kind.

`inputs` is exactly what the engine keys the output by; `context` only says where things are. Each function
writes under `out_dir` and returns a small JSON-able dict. `build_tiny`, `train` and `generate` load models and
run in a child process; the others are cheap and run in the parent, which never imports torch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dialsum import faults
from dialsum.engine.core import resolve
from dialsum.io.candidates import read_split_table
from dialsum.io.data import Dialogue, load_competition
from dialsum.io.files import atomic_write_json, atomic_write_text, csv_text

FALLBACK_SUMMARY = "#Person1#과 #Person2#가 대화를 나눕니다."


def _dev_rows(data, fnames: list[str]) -> list[Dialogue]:
    names = set(fnames)
    return [d for d in data.dev if d.fname in names]


def callback_of(entry: dict | None):
    """A callback named in a stage's context, `{"fn": "module:factory", "args": {...}}`, built in this process: how
    a caller (e.g. a tuning trial's reporter) reaches the training child without training code importing it."""
    return resolve(entry["fn"])(entry.get("args") or {}) if entry else None


def weights_of(context: dict) -> Path | None:
    """The trained weights a generating stage reads: a train stage's folder (`adapter/`, or `model/` after full
    fine-tuning), or an adapter given from anywhere."""
    if context.get("aligned"):  # an align stage's weights when it kept them, else the SFT weights it started from
        res = json.loads((Path(context["aligned"]) / "align_result.json").read_text(encoding="utf-8"))
        if res.get("kept"):
            return Path(res["weights"])
    if context.get("trained"):
        from dialsum.models.loading import trained_weights

        return trained_weights(Path(context["trained"]))
    return Path(context["adapter"]) if context.get("adapter") else None


# ---------------------------------------------------------------- model stages (child process)
def build_tiny(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    data = load_competition(Path(context["data_dir"]))
    path = build_tiny_model(out / "model", data.train, TinyModelSpec(**inputs["tiny"]), inputs.get("family", "decoder"))
    return {"path": str(path)}


def train(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.config import MetricSpec, ModelConfig
    from dialsum.models.preview import check_truncation, from_path
    from dialsum.models.training import train_model

    cfg = ModelConfig.model_validate(context["model"])
    data = load_competition(Path(context["data_dir"]))
    select = _dev_rows(data, inputs["dev_select"])
    on_evaluate = callback_of(context.get("on_evaluate"))  # e.g. a tuning trial's reporter (its pruner may stop it)

    out.mkdir(parents=True, exist_ok=True)
    check_truncation(from_path(context["base_path"], cfg, cfg.revision), cfg,
                     {"train": data.train, "dev": data.dev, "test": data.test}, out)  # before any training
    r = train_model(cfg, context["base_path"], data.train, select, out, MetricSpec(**inputs["metric"]), resume=True,
                    on_evaluate=on_evaluate, callbacks=faults.from_env())
    trunc = json.loads((out / "truncation.json").read_text(encoding="utf-8"))
    return {"adapter": str(r.adapter_dir), "best_dev_select": r.best_dev_final, "truncation": trunc,
            "dev_history": r.dev_history, "first_loss": r.losses[0] if r.losses else None,
            "last_loss": r.losses[-1] if r.losses else None}


def generate(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.config import GenerateSpec, ModelConfig
    from dialsum.models.generation import generate_candidates

    cfg = ModelConfig.model_validate(context["model"])
    data = load_competition(Path(context["data_dir"]))
    splits = {s: data.split(s) for s in inputs["splits"]}
    adapter = weights_of(context)
    label = context.get("adapter_label")
    if context.get("aligned"):  # say which weights the align stage's decision gave generation
        label = f"{label}:{'aligned' if adapter is not None and Path(context['aligned']) in adapter.parents else 'sft'}"
    paths = generate_candidates(cfg, context["base_path"], adapter, splits, out / "candidates",
                                GenerateSpec.model_validate(context["generate"]), None, out, adapter_label=label)
    return {"parts": [str(p) for p in paths]}


def prefs(inputs: dict, context: dict, out: Path) -> dict:
    """K samples per aligned train dialogue from the SFT model, each scored against its reference; preferences.csv
    (fname, candidate, score, rank) is what dpo and rank learn from."""
    from dialsum.align.preferences import align_rows, check_train_only, write_preferences
    from dialsum.align.sampling import sample_preferences
    from dialsum.config import GenerateSpec, ModelConfig

    cfg = ModelConfig.model_validate(context["model"])
    data = load_competition(Path(context["data_dir"]))
    rows = align_rows(data.train, cfg.align.rows, cfg.align.seed)
    ranked = sample_preferences(cfg, context["base_path"], weights_of({"trained": context["trained"]}), rows,
                                cfg.align, GenerateSpec.model_validate(context["generate"]), out / "samples",
                                inputs["metric"])
    check_train_only(ranked, {d.fname for d in data.train}, out / "preferences.csv")
    write_preferences(out / "preferences.csv", ranked)
    spread = sum(1 for f in {r.fname for r in ranked}
                 if max(r.score for r in ranked if r.fname == f) - min(r.score for r in ranked if r.fname == f)
                 >= cfg.align.min_margin)
    return {"preferences": str(out / "preferences.csv"), "dialogues": len(rows), "distinct_samples": len(ranked),
            "dialogues_with_margin": spread}


def align(inputs: dict, context: dict, out: Path) -> dict:
    """Preference optimisation after SFT (dialsum.align.run): the aligned weights, kept only when they beat SFT's
    greedy dev-select score (generated as the generate stage will) by more than one standard error;
    align_result.json says which, with both scores and the training curve."""
    from dialsum.align.preferences import align_rows, check_train_only, read_preferences
    from dialsum.align.run import align_model
    from dialsum.config import GenerateSpec, ModelConfig

    cfg = ModelConfig.model_validate(context["model"])
    data = load_competition(Path(context["data_dir"]))
    rows = align_rows(data.train, cfg.align.rows, cfg.align.seed)
    prefs = None
    if context.get("prefs"):
        prefs = read_preferences(Path(context["prefs"]))
        check_train_only(prefs, {d.fname for d in data.train}, Path(context["prefs"]))
    r = align_model(cfg, context["base_path"], weights_of({"trained": context["trained"]}), rows,
                    _dev_rows(data, inputs["dev_select"]), _dev_rows(data, inputs["dev_report"]), prefs, out,
                    inputs["metric"], callbacks=faults.from_env("align"),
                    gen=GenerateSpec.model_validate(context["generate"]))
    return {k: r.get(k) for k in ("method", "kept", "reason", "weights", "steps", "sft", "aligned", "heldout",
                                  "gain")} | {
        "result": str(out / "align_result.json")}


# ---------------------------------------------------------------- choosing stages (parent process)
def score_of(preds: dict[str, str], rows: list[Dialogue], metric: dict) -> dict:
    """The leaderboard score of preds on rows, with each row's own final score (`per_dialogue`, in row order): what
    the report's bootstrap intervals and paired comparisons resample."""
    from dialsum.scoring.metric import score_corpus

    s = score_corpus([preds.get(d.fname, "") for d in rows], [[d.summary] for d in rows], metric["semantics"],
                     metric["tokenizer"])
    return {**s.as_dict(), "per_dialogue": s.finals()}


def ensemble(inputs: dict, context: dict, out: Path) -> dict:
    """Fit the consensus (members, weights, quality prior) on dev-select, select for every dev and test dialogue.

    The fit falls back to the best single source when nothing beats it on dev-select; the uniform consensus is
    scored alongside for the report. Writes picks.csv (fname, split, summary, source), scores.json, fit.json and
    all_scores.csv (every candidate's score under the rule)."""
    from dialsum.io.candidates import read_candidates
    from dialsum.selection.consensus import SCORE_COLUMNS, Rule, score_rows, select

    data = load_competition(Path(context["data_dir"]))
    metric, spec = inputs["metric"], inputs["ensemble"]
    sel_rows = _dev_rows(data, inputs["dev_select"])
    rep_rows = _dev_rows(data, inputs["dev_report"])
    cands = read_candidates(context["parts"])
    first: dict[str, dict[str, str]] = {}
    groups: dict[str, list[tuple[str, str]]] = {}
    for c in cands:
        if c.sample_idx == 0:
            first.setdefault(c.source, {}).setdefault(c.fname, c.text)
        groups.setdefault(c.fname, []).append((c.text, c.source))
    sources = {src: {"select": score_of(p, sel_rows, metric), "report": score_of(p, rep_rows, metric)}
               for src, p in first.items()}
    weights, guard = spec.get("weights") or {}, spec.get("guard", True)
    fits = spec.get("fit", True) and not weights  # fixed weights are not refitted, but guarded on dev-select
    fit_refs = {d.fname: [d.summary] for d in sel_rows} if fits or (weights and guard) else None
    picks, report, dialogues, names, rule = select(groups, metric["semantics"], metric["tokenizer"], fit_refs,
                                                   weights, cv_folds=spec.get("cv_folds", 5),
                                                   utility=spec.get("utility", "mean"), guard=guard)
    uniform = Rule(tuple(1.0 for _ in names))
    uni = {d.fname: d.texts[uniform.pick(d)] for d in dialogues}
    chosen = {f: p.text for f, p in picks.items()}
    ens = {"select": score_of(chosen, sel_rows, metric), "report": score_of(chosen, rep_rows, metric)}
    uniform_scores = {"select": score_of(uni, sel_rows, metric), "report": score_of(uni, rep_rows, metric)}
    best_src = max(sources, key=lambda s: (sources[s]["select"]["final"], -list(sources).index(s)))
    rows = [[d.fname, split, picks[d.fname].text if d.fname in picks else "",
             picks[d.fname].source if d.fname in picks else ""]
            for split in ("dev", "test") for d in data.split(split)]
    atomic_write_text(out / "picks.csv", csv_text(["fname", "split", "summary", "source"], rows))
    atomic_write_text(out / "all_scores.csv", csv_text(SCORE_COLUMNS, score_rows(dialogues, names, picks, rule)))
    if report is not None:
        atomic_write_json(out / "fit.json", report)
    method = report["method"] if report else ("weighted consensus" if spec.get("weights") else "uniform consensus")
    result = {"picks": str(out / "picks.csv"), "sources": sources, "ensemble": ens, "uniform": uniform_scores,
              "method": method, "fit": report, "best_source": best_src, "n_sources": len(sources),
              "chosen": report["fit_rows_best_single"]["source"] if method == "best single source" else "ensemble"}
    atomic_write_json(out / "scores.json", result)
    return result


def postprocess(inputs: dict, context: dict, out: Path) -> dict:
    """Fit the post-processor on dev-select picks, apply it to every row; an empty result gets a fixed sentence
    (logged and counted). Writes final.csv and fitted.json."""
    from dialsum.scoring.metric import metric_rows
    from dialsum.selection.postprocess import LengthCap, PostProcessor

    data = load_competition(Path(context["data_dir"]))
    metric, pp = inputs["metric"], inputs["postprocess"]
    picks = read_split_table(Path(context["picks"]))
    sel_rows = _dev_rows(data, inputs["dev_select"])
    rep_rows = _dev_rows(data, inputs["dev_report"])
    fixed = (LengthCap(pp["max_sentences"], pp["max_morphemes"])
             if (pp.get("max_sentences") or pp.get("max_morphemes")) else None)
    proc = PostProcessor(tuple(pp["rules"]), pp["ablate"], pp["tune_length_cap"], fixed, metric["tokenizer"])
    fitted = proc.fit([picks["dev"][d.fname][0] for d in sel_rows], [[d.summary] for d in sel_rows],
                      metric_rows(metric))
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
            print(f"[dialsum] postprocess: {len(names)} empty {split} output(s) replaced by {FALLBACK_SUMMARY!r}: "
                  f"{names[:5]}", file=sys.stderr)
    atomic_write_text(out / "final.csv", csv_text(["fname", "split", "summary"], rows))
    atomic_write_json(out / "fitted.json", fitted.to_dict())
    return {"final": str(out / "final.csv"), "fitted": fitted.to_dict(), "describe": fitted.describe(),
            "select": score_of(final["dev"], sel_rows, metric), "report": score_of(final["dev"], rep_rows, metric),
            "empty_replaced": {k: len(v) for k, v in empty.items()}}


def submit(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.io.submission import write_submission

    data_dir = Path(context["data_dir"])
    final = read_split_table(Path(context["final"]))
    path = write_submission(Path(inputs["submissions_dir"]), inputs["run_id"], data_dir / "sample_submission.csv",
                            {f: t for f, (t, _) in final["test"].items()})
    return {"path": str(path)}


def devscore(inputs: dict, context: dict, out: Path) -> dict:
    """Greedy decoding of the given dev rows with a trained adapter, scored with the leaderboard metric."""
    from dialsum.config import DecodingSpec, ModelConfig
    from dialsum.models.encoding import encode_input
    from dialsum.models.generation import HFEngine

    cfg = ModelConfig.model_validate(context["model"])
    data = load_competition(Path(context["data_dir"]))
    rows = _dev_rows(data, inputs["rows"])
    engine = HFEngine(cfg, context["base_path"], weights_of(context), context.get("batch_size", 16))
    prompts = [encode_input(engine.tokenizer, d.dialogue, cfg) for d in rows]
    outs = engine.run(prompts, DecodingSpec(name="greedy"), None)
    preds = {d.fname: o[0][0] for d, o in zip(rows, outs)}
    return {"score": score_of(preds, rows, inputs["metric"]), "n": len(rows)}
