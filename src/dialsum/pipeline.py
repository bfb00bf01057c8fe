"""`dialsum run`: every stage in order inside runs/<run-id>/, with a manifest so re-runs skip finished stages.

The run id is the config's name plus a hash of the config, so running the same command again resumes the same
run folder (an interrupted stage picks up from its own checkpoints/journals).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from dialsum.config import ModelConfig, RunConfig
from dialsum.data import CompetitionData, load_competition
from dialsum.io_utils import atomic_write_json, atomic_write_text


class Manifest:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def done(self, stage: str) -> dict | None:
        return self.data.get(stage)

    def mark(self, stage: str, info: dict) -> None:
        self.data[stage] = {**info, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_json(self.path, self.data)


def log(msg: str) -> None:
    print(f"[dialsum] {msg}", flush=True)


def run_id_for(cfg: RunConfig, data_dir: Path) -> str:
    import hashlib

    h = hashlib.sha256(cfg.fingerprint().encode())
    for name in ("train.csv", "dev.csv", "test.csv", "sample_submission.csv"):
        h.update((data_dir / name).read_bytes())
    return f"{cfg.name}-{h.hexdigest()[:8]}"


def base_model_path(cfg: ModelConfig, run_dir: Path, data: CompetitionData) -> str:
    """The hub id/folder, or the tiny model built (once) into the run folder."""
    if cfg.path is not None:
        return cfg.path
    out = run_dir / "models" / cfg.name / "base"
    if not (out / "config.json").exists():
        from dialsum.tiny_model import build_tiny_model

        log(f"building tiny model {cfg.name} -> {out}")
        build_tiny_model(out, data.train, cfg.tiny)
    return str(out)


def dev_row(stage: str, detail: str, score) -> dict:
    return {"stage": stage, "detail": detail, **score.as_dict()}


def run_pipeline(cfg: RunConfig, data_dir: Path | None = None, run_id: str | None = None,
                 backend: str | None = None) -> dict:
    from dialsum.candidates import read_store
    from dialsum.ensemble import ensemble
    from dialsum.generate import generate_candidates
    from dialsum.metric import score_corpus
    from dialsum.modeling import check_feasible, check_source
    from dialsum.postprocess import LengthCap, ablate, apply_rules, length_cap_grid
    from dialsum.tokenize import get_tokenizer
    from dialsum.report import write_report
    from dialsum.submit import write_submission
    from dialsum.train import train_model

    from dialsum.errors import DialsumError

    if set(cfg.generate.splits) != {"dev", "test"}:
        raise DialsumError(f"generate.splits is {cfg.generate.splits}: `dialsum run` needs dev (report) and test (submission)")
    data_dir = Path(data_dir or cfg.data.dir)
    data = load_competition(data_dir)
    run_id = run_id or run_id_for(cfg, data_dir)
    run_dir = Path(cfg.output_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.snapshot.json", json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False))
    manifest = Manifest(run_dir / "manifest.json")
    log(f"run {run_id} in {run_dir}")
    sem, tok = cfg.metric.semantics, cfg.metric.tokenizer
    dev_refs = [[d.summary] for d in data.dev]
    store = run_dir / "candidates"
    for m in cfg.models:
        if m.path is not None:
            check_source(m.path)
        check_feasible(m)

    # 1-2. train and generate, model by model
    for m in cfg.models:
        base = base_model_path(m, run_dir, data)
        stage = f"train:{m.name}"
        if not manifest.done(stage):
            log(f"training {m.name}")
            r = train_model(m, base, data.train, data.dev, run_dir / "models" / m.name, cfg.metric, resume=True)
            manifest.mark(stage, {"adapter": str(r.adapter_dir), "best_dev_final": r.best_dev_final})
        adapter = Path(manifest.done(stage)["adapter"])
        stage = f"generate:{m.name}"
        if not manifest.done(stage):
            log(f"generating candidates with {m.name}")
            splits = {s: data.split(s) for s in cfg.generate.splits}
            paths = generate_candidates(m, base, adapter, splits, store, cfg.generate, backend, run_dir)
            manifest.mark(stage, {"parts": [str(p) for p in paths]})

    # 3. per-source dev scores
    cands = read_store(store)
    rows = []
    by_source: dict[str, dict[str, list[str]]] = {}
    for c in cands:
        by_source.setdefault(c.source, {}).setdefault(f"{c.split}/{c.fname}", []).append(c.text)
    for src, texts in by_source.items():
        preds = [texts.get(f"dev/{d.fname}", [""])[0] for d in data.dev]
        rows.append(dev_row("generate", f"{src} (first candidate)", score_corpus(preds, dev_refs, sem, tok)))

    # 4. ensemble
    picks = {}
    for split, rows_ in (("dev", data.dev), ("test", data.test)):
        groups = {d.fname: [] for d in rows_}
        for c in cands:
            if c.split == split and c.fname in groups:
                groups[c.fname].append((c.text, c.source))
        picks[split] = ensemble(groups, sem, tok, cfg.ensemble.weights)
    ens_dev = [picks["dev"][d.fname].text for d in data.dev]
    rows.append(dev_row("ensemble", f"MBR over {len(by_source)} sources", score_corpus(ens_dev, dev_refs, sem, tok)))

    # 5. post-process: rules chosen on dev
    def final_of(preds, refs):
        return score_corpus(list(preds), [list(r) for r in refs], sem, tok).final

    pp = cfg.postprocess
    morphemes = get_tokenizer(tok)

    def count(text: str) -> int:
        return len(morphemes(text))

    fixed = LengthCap(pp.max_sentences, pp.max_morphemes) if (pp.max_sentences or pp.max_morphemes) else None
    if pp.ablate:
        caps = [] if fixed or not pp.tune_length_cap else length_cap_grid(dev_refs, count)
        rules, cap, gains = ablate(ens_dev, dev_refs, pp.rules, final_of, caps, count)
        cap = fixed or cap
    else:
        rules, cap, gains = list(pp.rules), fixed, []
    post_dev = [apply_rules(t, rules, cap, count) for t in ens_dev]
    detail = f"{len(rules)} rule(s): {', '.join(rules) or 'none'}; {cap or 'no length cap'}"
    rows.append(dev_row("postprocess", detail, score_corpus(post_dev, dev_refs, sem, tok)))
    test_final = {d.fname: apply_rules(picks["test"][d.fname].text, rules, cap, count) for d in data.test}
    for d in data.test:  # a submission needs text for every row, even if every candidate was empty
        if not test_final[d.fname].strip():
            test_final[d.fname] = "#Person1#과 #Person2#가 대화를 나눕니다."
    atomic_write_json(run_dir / "dev_predictions.json", dict(zip([d.fname for d in data.dev], post_dev)))

    # 6. submit
    stage = "submit"
    if manifest.done(stage) and Path(manifest.done(stage)["path"]).exists():
        sub = Path(manifest.done(stage)["path"])
    else:
        sub = write_submission(cfg.submissions_dir, run_id, data.directory / "sample_submission.csv", test_final)
        manifest.mark(stage, {"path": str(sub)})

    extra = ["## Post-processing ablation (dev)", "", "| rule | on | off | delta | half A | half B | enabled |",
             "|---|---:|---:|---:|---:|---:|---|"]
    extra += [f"| {g.rule} | {g.on:.4f} | {g.off:.4f} | {g.delta:+.4f} | {g.delta_a:+.4f} | {g.delta_b:+.4f} | {'yes' if g.enabled else 'no'} |"
              for g in gains]
    extra += ["", f"Submission: `{sub}`"]
    report = write_report(run_dir, rows, {f: p.source for f, p in picks["dev"].items()}, extra)
    log(f"report: {report}")
    return {"run_id": run_id, "run_dir": run_dir, "submission": sub, "report": report, "rows": rows}
