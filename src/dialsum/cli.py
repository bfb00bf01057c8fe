"""Command line: `dialsum <stage>` for each stage, `dialsum run` for all of them.

Heavy libraries (torch, transformers, peft) are imported inside the commands that need them, so `score`,
`ensemble`, `postprocess` and `submit` start in well under a second.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dialsum.errors import DialsumError

DEFAULT_CONFIG = "configs/default.yaml"


def _config(args):
    from dialsum.config import load_config

    overrides = {}
    if getattr(args, "output_dir", None):
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    if getattr(args, "submissions_dir", None):
        overrides["submissions_dir"] = str(Path(args.submissions_dir).resolve())
    return load_config(Path(args.config), overrides)


def cmd_run(args) -> int:
    from dialsum.pipeline import run_pipeline

    out = run_pipeline(_config(args), args.data_dir, args.run_id, args.backend)
    for r in out["rows"]:
        print(f"  dev {r['stage']:<12} {r['final']:8.4f}  {r['detail']}")
    print(f"report: {out['report']}")
    print(f"submission: {out['submission']}")
    return 0


def cmd_build_tiny_model(args) -> int:
    from dialsum.config import TinyModelSpec
    from dialsum.data import load_dialogues
    from dialsum.tiny_model import build_tiny_model

    rows = load_dialogues(Path(args.train), with_summary=True)
    spec = TinyModelSpec(pretrain_steps=args.pretrain_steps) if args.pretrain_steps is not None else TinyModelSpec()
    print(build_tiny_model(Path(args.out_dir), rows, spec))
    return 0


def _selected_models(cfg, names):
    if not names:
        return cfg.models
    chosen = [m for m in cfg.models if m.name in names]
    unknown = set(names) - {m.name for m in chosen}
    if unknown:
        raise DialsumError(f"unknown model(s) {sorted(unknown)}; configured: {[m.name for m in cfg.models]}")
    return chosen


def cmd_train(args) -> int:
    cfg = _config(args)
    models = _selected_models(cfg, args.model)
    if args.dry_run:
        from dialsum.plan import describe_plan

        for m in models:
            print(describe_plan(m))
        return 0
    from dialsum.data import load_competition
    from dialsum.modeling import check_feasible, check_source
    from dialsum.pipeline import Manifest, base_model_path, run_id_for
    from dialsum.train import train_model

    data_dir = Path(args.data_dir or cfg.data.dir)
    data = load_competition(data_dir)
    run_id = args.run_id or run_id_for(cfg, data_dir)
    run_dir = Path(cfg.output_dir) / run_id
    manifest = Manifest(run_dir / "manifest.json")
    for m in models:
        if m.path is not None:
            check_source(m.path)
        check_feasible(m)
    for m in models:
        base = base_model_path(m, run_dir, data)
        r = train_model(m, base, data.train, data.dev, run_dir / "models" / m.name, cfg.metric, resume=args.resume)
        manifest.mark(f"train:{m.name}", {"adapter": str(r.adapter_dir), "best_dev_final": r.best_dev_final})
        print(f"{m.name}: best dev final {r.best_dev_final} -> {r.adapter_dir}")
    return 0


def cmd_generate(args) -> int:
    from dialsum.data import load_competition
    from dialsum.generate import generate_candidates
    from dialsum.pipeline import Manifest, base_model_path, run_id_for

    cfg = _config(args)
    data_dir = Path(args.data_dir or cfg.data.dir)
    data = load_competition(data_dir)
    run_id = args.run_id or run_id_for(cfg, data_dir)
    run_dir = Path(cfg.output_dir) / run_id
    manifest = Manifest(run_dir / "manifest.json")
    store = Path(args.out) if args.out else run_dir / "candidates" / (args.backend or cfg.generate.backend)
    for m in _selected_models(cfg, args.model):
        base = base_model_path(m, run_dir, data)
        trained = manifest.done(f"train:{m.name}")
        adapter = Path(trained["adapter"]) if trained else None
        if adapter is None:
            print(f"{m.name}: no trained adapter in {run_dir}; generating with the base model", file=sys.stderr)
        splits = {s: data.split(s) for s in cfg.generate.splits}
        for p in generate_candidates(m, base, adapter, splits, store, cfg.generate, args.backend, run_dir):
            print(p)
    return 0


def _parse_weights(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        k, _, v = item.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise DialsumError(f"--weights: expected source=number, got {item!r}") from None
    return out


def cmd_ensemble(args) -> int:
    from dialsum.candidates import read_predictions, read_store
    from dialsum.ensemble import ensemble
    from dialsum.io_utils import atomic_write_text, csv_text

    groups: dict[str, list[tuple[str, str]]] = {}
    order: list[str] = []
    sources = [Path(p) for p in args.candidates]
    if len(sources) == 1 and sources[0].is_dir():
        store = sources[0] / "candidates" if (sources[0] / "candidates").is_dir() else sources[0]
        for c in read_store(store, args.split):
            if c.fname not in groups:
                order.append(c.fname)
            groups.setdefault(c.fname, []).append((c.text, c.source))
    else:
        tables = [(p.stem, read_predictions(p)) for p in sources]
        order = list(dict.fromkeys(f for _, t in tables for f in t))
        for f in order:
            groups[f] = [(t[f], name) for name, t in tables if f in t]
            if len(groups[f]) < len(tables):
                print(f"warning: {f}: only {len(groups[f])} of {len(tables)} sources have a candidate", file=sys.stderr)
    picks = ensemble(groups, args.semantics, args.tokenizer, _parse_weights(args.weights), workers=args.workers)
    rows = [[f, picks[f].text, picks[f].source] for f in order if f in picks]
    atomic_write_text(Path(args.out), csv_text(["fname", "summary", "source"], rows))
    print(f"{args.out}: {len(rows)} selections")
    return 0


def cmd_postprocess(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.io_utils import atomic_write_text, csv_text
    from dialsum.postprocess import RULES, LengthCap, ablate, apply_rules, length_cap_grid
    from dialsum.tokenize import get_tokenizer

    preds = read_predictions(Path(args.pred))
    rules = args.rules.split(",") if args.rules else list(RULES)
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise DialsumError(f"--rules: unknown rule(s) {unknown} (known: {', '.join(RULES)})")
    morphemes = get_tokenizer("mecab")

    def count(text: str) -> int:
        return len(morphemes(text))

    cap = LengthCap(args.max_sentences, args.max_morphemes) if (args.max_sentences or args.max_morphemes) else None
    if args.ablate:
        from dialsum.metric import score_corpus

        if not args.refs:
            raise DialsumError("--ablate needs --refs (a CSV with fname and summary[1..K])")
        refs = read_references(Path(args.refs))
        names = [f for f in refs if f in preds]
        if not names:
            raise DialsumError(f"{args.pred}: no fname in common with {args.refs}")
        ref_lists = [refs[f] for f in names]
        caps = [] if cap or args.length_cap == "off" else length_cap_grid(ref_lists, count)
        rules, tuned, gains = ablate([preds[f] for f in names], ref_lists, rules,
                                     lambda p, r: score_corpus(list(p), [list(x) for x in r], args.semantics).final,
                                     caps, count)
        cap = cap or tuned
        print(f"{'rule':<34}{'on':>10}{'off':>10}{'delta':>10}{'half A':>10}{'half B':>10}  enabled")
        for g in gains:
            print(f"{g.rule:<34}{g.on:10.4f}{g.off:10.4f}{g.delta:+10.4f}{g.delta_a:+10.4f}{g.delta_b:+10.4f}  {'yes' if g.enabled else 'no'}")
        print(f"enabled rules: {','.join(rules) or 'none'}; {cap or 'no length cap'}")
    if args.out:
        rows = [[f, apply_rules(t, rules, cap, count)] for f, t in preds.items()]
        atomic_write_text(Path(args.out), csv_text(["fname", "summary"], rows))
        print(f"{args.out}: {len(rows)} rows")
    return 0


def read_references(path: Path) -> dict[str, list[str]]:
    """fname -> references, from `summary` or `summary1..summaryK` columns."""
    from dialsum.data import read_table

    header, rows = read_table(path)
    cols = sorted((h for h in header if h.startswith("summary") and h[7:].isdigit()), key=lambda h: int(h[7:]))
    cols = cols or (["summary"] if "summary" in header else [])
    if "fname" not in header or not cols:
        raise DialsumError(f"{path}: needs fname and summary (or summary1..summaryK) columns")
    out = {}
    for i, r in enumerate(rows, start=1):
        refs = [" ".join(r[c].split()) for c in cols if r[c].strip()]
        if not refs:
            raise DialsumError(f"{path}: row {i} ({r['fname']}): no reference summary")
        out[r["fname"].strip()] = refs
    return out


def cmd_score(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.metric import score_corpus

    preds = read_predictions(Path(args.pred))
    refs = read_references(Path(args.refs))
    missing = [f for f in refs if f not in preds]
    extra = [f for f in preds if f not in refs]
    if missing or extra:
        raise DialsumError(f"{args.pred}: fnames differ from {args.refs}: missing {missing[:5]} extra {extra[:5]}"
                           f" ({len(missing)} missing, {len(extra)} extra)")
    names = list(refs)
    empty = [f for f in names if not preds[f].strip()]
    if empty:
        print(f"warning: {len(empty)} empty/NaN prediction(s) score 0, e.g. {empty[:3]}", file=sys.stderr)
    s = score_corpus([preds[f] for f in names], [refs[f] for f in names], args.semantics, args.tokenizer)
    if args.json:
        print(json.dumps(s.as_dict()))
    else:
        print(f"ROUGE-1 {s.rouge1:.4f}  ROUGE-2 {s.rouge2:.4f}  ROUGE-L {s.rougeL:.4f}  final {s.final:.4f}")
    return 0


def cmd_submit(args) -> int:
    from dialsum.candidates import read_predictions
    from dialsum.submit import write_submission

    preds = read_predictions(Path(args.pred))
    print(write_submission(Path(args.out_dir), args.run_id, Path(args.sample_submission), preds))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dialsum", description="Korean dialogue summarisation with fine-tuned LLMs.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="run config YAML (default: %(default)s)")
        sp.add_argument("--data-dir", help="folder with train.csv, dev.csv, test.csv, sample_submission.csv")
        sp.add_argument("--run-id", help="run folder name under output_dir (default: <name>-<config/data hash>)")
        sp.add_argument("--output-dir", help="override the config's output_dir (run folders)")
        sp.add_argument("--submissions-dir", help="override the config's submissions_dir")

    sp = sub.add_parser("run", help="all stages: train, generate, ensemble, postprocess, submit, report")
    with_config(sp)
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("build-tiny-model", help="build the tiny local Llama + tokenizer (CPU stand-in for an LLM)")
    sp.add_argument("out_dir")
    sp.add_argument("--train", default="data/sample/train.csv", help="training CSV for the tokenizer (default: %(default)s)")
    sp.add_argument("--pretrain-steps", type=int, help="causal-LM warm-up steps on the dialogues")
    sp.set_defaults(func=cmd_build_tiny_model)

    sp = sub.add_parser("train", help="QLoRA fine-tuning of the configured models (best adapter by dev score)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="train only this model (repeatable)")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    sp.add_argument("--dry-run", action="store_true", help="print each model's plan and GPU memory estimate")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("generate", help="candidate summaries for dev and test (vLLM or transformers)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="only this model (repeatable)")
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.add_argument("--out", help="candidate store folder (default: runs/<run-id>/candidates/<backend>)")
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("ensemble", help="ROUGE-consensus (MBR) selection over candidates")
    sp.add_argument("--candidates", nargs="+", required=True, help="submission-style CSVs, or one run folder")
    sp.add_argument("--out", required=True)
    sp.add_argument("--split", default="test", help="split to select from a run's store (default: %(default)s)")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--weights", help="source=weight,... (source = file stem, model or model/decoding)")
    sp.add_argument("--workers", type=int, default=2, help="processes for tokenisation (default: %(default)s)")
    sp.set_defaults(func=cmd_ensemble)

    sp = sub.add_parser("postprocess", help="apply post-processing rules; --ablate measures each on dev")
    sp.add_argument("--pred", required=True, help="CSV with fname (or id) and summary")
    sp.add_argument("--out", help="write the processed CSV here")
    sp.add_argument("--rules", help="comma-separated rule names, in order (default: all)")
    sp.add_argument("--ablate", action="store_true", help="print each rule's dev gain and keep only helpful rules")
    sp.add_argument("--refs", help="references CSV for --ablate")
    sp.add_argument("--length-cap", choices=["tune", "off"], default="tune",
                    help="with --ablate: tune a length cap (sentences / morphemes) on dev (default: %(default)s)")
    sp.add_argument("--max-sentences", type=int, help="fixed cap: keep at most this many sentences")
    sp.add_argument("--max-morphemes", type=int, help="fixed cap: whole sentences up to this many Mecab morphemes")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.set_defaults(func=cmd_postprocess)

    sp = sub.add_parser("submit", help="write a validated submission CSV (never overwrites)")
    sp.add_argument("--pred", required=True, help="CSV with fname (or id) and summary")
    sp.add_argument("--sample-submission", required=True)
    sp.add_argument("--out-dir", default="submissions")
    sp.add_argument("--run-id", required=True, help="file name stem")
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("score", help="leaderboard metric of a predictions CSV against references")
    sp.add_argument("--pred", required=True)
    sp.add_argument("--refs", required=True)
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_score)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DialsumError as e:
        print(f"dialsum: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dialsum: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
