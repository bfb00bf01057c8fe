"""Typed, validated configuration: YAML files merged (base model file + inline overrides) into pydantic objects.

Paths inside a YAML file are relative to that file's folder. A run config lists models either as paths to
`configs/models/*.yaml` or as mappings `{base: models/x.yaml, <overrides>}`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from dialsum.errors import DialsumError
from dialsum.model_specs import (  # noqa: F401 - re-exported: `from dialsum.config import TrainSpec`
    VLLM_LORA_RANKS, AlignSpec, ArchSpec, DecodingSpec, LoraSpec, Strict, TinyModelSpec, TrainSpec)
from dialsum.run_specs import DevSplitSpec, FinalSpec, TrackingSpec  # noqa: F401 - re-exported like the above


# model fields for the --dry-run plan added after run ids existed: they change no output, so no run id holds them
MODEL_PLAN_FIELDS_NOT_IN_RUN_ID = ("tokens_per_char",)


class ModelConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="the model's name in stage names, candidate sources "
                                                                "and --model/--set")
    family: Literal["decoder", "seq2seq"] = Field("decoder", description="decoder-only LLM, or encoder-decoder "
                                                                         "(KoBART, T5, mBART)")
    finetune: Literal["auto", "full", "lora", "qlora"] = Field(
        "auto", description="auto: qlora when `quantization` is 4bit/8bit, else lora; full trains every weight")
    source_prefix: str = Field("", description="seq2seq: text before the dialogue (T5: 'summarize: ')")
    lang_code: str | None = Field(None, description="mBART: source/target language code, e.g. ko_KR")
    path: str | None = Field(None, description="hub id or local folder; None with `tiny`: built locally (a build "
                                               "stage)")
    tiny: TinyModelSpec | None = Field(None, description="the tiny stand-in to build when `path` is None")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit); its resolved commit is keyed")
    model_type: str = Field("llama", description="architecture name (llama, qwen2, exaone, bart, t5, ...) for the "
                                                 "plan and loading")
    trust_remote_code: bool = Field(False, description="allow the checkpoint's own modelling code (EXAONE, some "
                                                       "Korean LLMs)")
    prompt_format: Literal["instruction", "chat"] = Field("instruction",
        description="instruction (### markers) or chat (the tokenizer's chat template)")
    system_prompt: str = Field("당신은 대화를 정확하고 간결하게 요약하는 도우미입니다.", description="chat: the system turn")
    instruction: str = Field("다음 대화를 요약해주세요.", description="the instruction before the dialogue")
    target_modules: list[str] = Field(description="Linear layers LoRA adapts (e.g. q_proj, k_proj, v_proj, o_proj, "
                                                  "gate_proj, up_proj, down_proj)")
    max_input_tokens: int = Field(1024, ge=16, description="dialogue tokens kept (longer dialogues lose their start; "
                                                           "truncation is measured before training)")
    max_new_tokens: int = Field(128, ge=1, description="summary tokens trained on and generated")
    quantization: Literal["4bit", "8bit", "none"] = Field("4bit", description="base weights while training: 4bit "
                                                                              "(QLoRA nf4), 8bit, or none")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto",
        description="compute dtype; auto: bf16 where the GPU has it, else fp16 on a GPU, fp32 on CPU")
    params_billion: float | None = Field(None, gt=0, description="for --dry-run memory estimates")
    tokens_per_char: float | None = Field(None, gt=0, description="the time plan's tokens per character when the "
                                                                  "model's tokenizer is not here (None: 1.0)")
    arch: ArchSpec | None = Field(None, description="architecture numbers for the memory plan when no config.json is "
                                                    "cached")
    expect: dict[str, Any] = Field(default_factory=dict, description=(
        "facts the loaded checkpoint must have (vocab_size, eos_token_id, bos_token, eos_token, pad_token): a "
        "revision whose files changed fails in one line instead of training on the wrong tokens"))
    lora: LoraSpec = Field(LoraSpec(), description="LoRA rank, alpha, dropout")
    train: TrainSpec = Field(TrainSpec(), description="supervised fine-tuning (loss on the summary only)")
    align: AlignSpec = Field(AlignSpec(), description="preference optimisation after SFT, rewarded by the "
                                                      "leaderboard metric")
    decodings: list[DecodingSpec] = Field(default_factory=lambda: [DecodingSpec(name="greedy")],
        description="each a candidate source for the ensemble")

    @property
    def method(self) -> str:
        """full, lora or qlora: what training actually does."""
        if self.finetune != "auto":
            return self.finetune
        return "qlora" if self.quantization != "none" else "lora"

    @model_validator(mode="after")
    def _source(self):
        if self.method == "qlora" and self.quantization == "none":
            raise ValueError(f"model {self.name}: finetune qlora needs quantization 4bit or 8bit")
        if self.path is None and self.tiny is None:
            raise ValueError(f"model {self.name}: give `path` (hub id or folder) or `tiny`")
        names = [d.name for d in self.decodings]
        if len(set(names)) != len(names):
            raise ValueError(f"model {self.name}: duplicate decoding names {names}")
        if self.family == "seq2seq" and self.align.method in ("dpo", "grpo"):
            raise ValueError(f"model {self.name}: align.method {self.align.method} is for decoder-only models (TRL "
                             f"1.16's DPO/GRPO trainers have no encoder-decoder path); use `rank` for seq2seq")
        return self


class DataSpec(Strict):
    dir: Path = Field(description="folder with train.csv, dev.csv, test.csv, sample_submission.csv")
    limit: int | None = Field(None, ge=4, description="smoke mode (`--limit N`): a seeded, topic-stratified subset of "
                                                      "at most N rows of each split, tiny stand-ins pre-trained at "
                                                      "most N steps; the submission is <run-id>-smoke.csv, not a "
                                                      "real one")


class GenerateSpec(Strict):
    backend: Literal["auto", "vllm", "hf"] = Field("hf", description="auto: vLLM where installed (resolved before "
                                                                     "keying), else transformers; seq2seq always "
                                                                     "transformers")
    batch_size: int = Field(16, ge=1, description="dialogues per batch (transformers; vLLM schedules itself)")
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="weights at generation: hf loads the base through bitsandbytes; vLLM serves 8bit as its "
                            "online fp8 and has no 4-bit loading (then generation uses hf); none = compute dtype")
    splits: list[Literal["dev", "test"]] = Field(["dev", "test"], description="`dialsum run` needs both (dev: the "
                                                                              "ensemble's fit and the report; test: "
                                                                              "the submission)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM's share of the card")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs one model is split over")
    max_model_len: int | None = Field(None, ge=16, description="vLLM; default max_input_tokens + max_new_tokens")
    cpu_kv_cache_gb: float = Field(1.0, gt=0, description="vLLM on CPU: KV cache GiB")
    enforce_eager: bool = Field(False, description="vLLM without torch.compile/CUDA graphs: starts in seconds instead "
                                                    "of ~40 s on CPU, decodes slower (tests, short jobs)")

    @model_validator(mode="after")
    def _quantization(self):
        if self.backend == "vllm" and self.quantization == "4bit":
            raise ValueError("generate.quantization 4bit: vLLM has no 4-bit loading (bitsandbytes was removed); use "
                             "backend hf or auto (then hf at 4 bits), or quantization 8bit (vLLM's online fp8)")
        return self


class MetricSpec(Strict):
    semantics: Literal["pltrdy", "rouge-score"] = Field("pltrdy", description="pltrdy (the leaderboard's ROUGE, "
                                                                              "multi-reference max) or rouge-score "
                                                                              "(Google's)")
    tokenizer: Literal["mecab", "latin", "whitespace"] = Field("mecab",
        description="mecab morphemes (the leaderboard's), or latin/whitespace for other languages")


class EnsembleSpec(Strict):
    fit: bool = Field(True, description="fit members, weights and the quality prior on dev-select (else uniform MBR)")
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="fixed source (model or model/decoding) -> weight (>= 0; 0 drops it); "
                                          "disables fit")
    guard: bool = Field(True, description="with fixed weights: judge them on dev-select like a fit (k-fold, "
                                          "one-SE rule against the best single source and the uniform consensus)")
    cv_folds: int = Field(5, ge=0, description="k-fold estimate of the fit on dev-select (0: none; 1 is no k-fold)")
    utility: Literal["mean", "rouge1", "rouge2", "rougeL"] = Field(
        "mean", description="consensus utility from the three F1 matrices")

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, v):
        if v == 1:
            raise ValueError("cv_folds 1 is no cross-validation: 0 (none) or at least 2")
        return v


class PostprocessSpec(Strict):
    rules: list[str] = Field(default_factory=lambda: ["strip_prompt_echo", "first_paragraph", "normalise_speaker_tags",
                                                      "drop_repeated_sentences", "drop_garbage_runs",
                                                      "normalise_whitespace", "final_punctuation"],
                                                          description="rules tried in order "
                                                                      "(dialsum.postprocess.RULES)")
    ablate: bool = Field(True, description="keep a rule only for a held-out gain over one standard error on "
                                           "dev-select (false: apply all)")
    tune_length_cap: bool = Field(True, description="try 1-3 sentences and reference-length percentiles on "
                                                    "dev-select; keep one only if it helps")
    max_sentences: int | None = Field(None, ge=1, description="fixed cap, applied as is (no tuning)")
    max_morphemes: int | None = Field(None, ge=1, description="fixed cap in Mecab morphemes, whole sentences kept")


class RunConfig(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$", description="the run id's prefix (<name>-<hash of config "
                                                                       "and data>)")
    seed: int = Field(42, ge=0, description="the run's seed (dev split, unless dev_split.seed)")
    output_dir: Path = Field(Path("runs"), description="run folders and the stage cache (runs/cache)")
    submissions_dir: Path = Field(Path("submissions"), description="where submissions are written (never overwritten)")
    data: DataSpec = Field(description="the competition's CSVs")
    models: list[ModelConfig] = Field(description="models trained and ensembled: paths to configs/models/*.yaml or "
                                                  "{base: ..., overrides}")
    generate: GenerateSpec = Field(GenerateSpec(), description="how candidates are generated")
    metric: MetricSpec = Field(MetricSpec(), description="the leaderboard metric")
    ensemble: EnsembleSpec = Field(EnsembleSpec(), description="the consensus over all candidates")
    postprocess: PostprocessSpec = Field(PostprocessSpec(), description="rules and the length cap after the ensemble")
    dev_split: DevSplitSpec = Field(DevSplitSpec(), description="dev-select (chooses) and dev-report (only scored)")
    tracking: TrackingSpec = Field(TrackingSpec(), description="experiment tracking besides report.md")
    final: FinalSpec = Field(FinalSpec(), description="the endgame: a refit on train + dev after everything is chosen")

    def identity(self) -> dict:
        """What a run id hashes: the config without where things go, where numbers are tracked, the final refit
        (its submission is <run-id>-final.csv beside the run's own) and the plan-only model fields added after run
        ids existed (so an old run keeps its id)."""
        blob = self.model_dump(mode="json", exclude={"output_dir", "submissions_dir", "data", "tracking", "final"})
        for m in blob["models"]:
            for k in MODEL_PLAN_FIELDS_NOT_IN_RUN_ID:
                m.pop(k, None)
        return blob

    @field_validator("models")
    @classmethod
    def _unique(cls, v):
        names = [m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names {names}")
        if not v:
            raise ValueError("no models configured")
        return v

# ---------------------------------------------------------------- loading
def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DialsumError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DialsumError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DialsumError(f"{path}: top level must be a mapping")
    return data


def _resolve(base: Path, value: str | None) -> str | None:
    """A relative filesystem path in a YAML file means relative to that file; hub ids stay as they are."""
    if value is None:
        return None
    p = Path(value)
    if p.is_absolute():
        return str(p)
    if value.startswith(".") or (base / p).exists():
        return str((base / p).resolve())
    return value


def load_model_dict(entry: Any, base_dir: Path) -> dict:
    if isinstance(entry, str):
        entry = {"base": entry}
    if not isinstance(entry, dict):
        raise DialsumError(f"models: each entry must be a path or a mapping, got {entry!r}")
    entry = dict(entry)
    merged: dict = {}
    if "base" in entry:
        path = (base_dir / entry.pop("base")).resolve()
        merged = read_yaml(path)
        if merged.get("path"):
            merged["path"] = _resolve(path.parent, merged["path"])
    if entry.get("path"):
        entry["path"] = _resolve(base_dir, entry["path"])
    return deep_merge(merged, entry)


def _format_validation(path: Path, e: ValidationError, raw: dict | None = None, sets: list[str] | None = None) -> str:
    """One line: where (models by name, not index), what is wrong, the nearest known key for an unknown one, and the
    `--set` flag that put the value there when one did."""
    import difflib
    import fnmatch

    err = e.errors()[0]
    loc = [str(x) for x in err["loc"]]
    if raw and len(loc) > 1 and loc[0] == "models" and loc[1].isdigit():
        models = raw.get("models") or []
        i = int(loc[1])
        if i < len(models) and isinstance(models[i], dict) and models[i].get("name"):
            loc[1] = str(models[i]["name"])
    where = ".".join(loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        known = _fields_at(RunConfig, [x for x in loc[:-1] if not (x.isdigit() or (loc[0] == "models" and x == loc[1]))])
        near = difflib.get_close_matches(loc[-1], known, n=1)
        msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    flag = next((s for s in reversed(sets or []) if any(
        fnmatch.fnmatchcase(w, _set_path(s)) or fnmatch.fnmatchcase(w, _set_path(s) + ".*")
        for w in (where, ".".join(loc[:-1])))), None)
    head = f"--set {flag}" if flag else str(path)
    return f"{head}: {where}: {msg}" + (f" ({len(e.errors()) - 1} more)" if len(e.errors()) > 1 else "")


def _set_path(item: str) -> str:
    return item.partition("=")[0].strip()


def _fields_at(model, keys: list[str]) -> list[str]:
    """The field names of the config section at `keys` (list items skipped), for "did you mean"."""
    import typing

    from pydantic import BaseModel

    for k in keys:
        field = model.model_fields.get(k)
        if field is None:
            return []
        nxt = None
        for t in (field.annotation, *typing.get_args(field.annotation)):
            for tt in (typing.get_args(t) or (t,)):
                if isinstance(tt, type) and issubclass(tt, BaseModel):
                    nxt = tt
        if nxt is None:
            return []
        model = nxt
    return list(model.model_fields)


def parse_set(item: str) -> tuple[list[str], Any]:
    """`PATH=VALUE` of `--set`: a dotted path and a YAML scalar or list (`r=32`, `ablate=false`, `rules=[a, b]`)."""
    path, eq, value = item.partition("=")
    keys = path.strip().split(".")
    if not eq or not all(k.strip() for k in keys):
        raise DialsumError(f"--set {item!r}: expected PATH=VALUE, e.g. models.tiny.lora.r=32 or generate.backend=hf")
    try:
        return [k.strip() for k in keys], yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise DialsumError(f"--set {item!r}: the value is not YAML ({str(e).splitlines()[0]})") from None


def apply_sets(raw: dict, sets: list[str] | None) -> dict:
    """The config dict with `--set` edits applied, exactly where the same edit in the YAML would land; a model is
    addressed by name (`models.<name>.<key>...`). Validation (unknown keys, types, ranges) is the schema's, after."""
    for item in sets or []:
        keys, value = parse_set(item)
        if keys[:2] == ["models", "*"] and isinstance(raw.get("models"), list):  # every model
            for m in raw["models"]:
                if isinstance(m, dict) and m.get("name"):
                    apply_sets(raw, [f"models.{m['name']}.{'.'.join(keys[2:])}={item.partition('=')[2]}"])
            continue
        node: Any = raw
        if keys[0] == "models" and isinstance(raw.get("models"), list):
            named = {m.get("name"): m for m in raw["models"] if isinstance(m, dict)}
            # a model name may itself hold dots (solar-10.7b): the longest name the path starts with
            hit = max((n for n in named if isinstance(n, str) and keys[1:1 + n.count(".") + 1] == n.split(".")
                       and len(keys) > n.count(".") + 2), key=len, default=None)
            if hit is None:
                raise DialsumError(f"--set {item!r}: no model named {keys[1] if len(keys) > 1 else ''!r} "
                                   f"(models: {', '.join(str(n) for n in named)}); use models.<name>.<key>=VALUE")
            node, keys = named[hit], keys[2 + hit.count("."):]
        for k in keys[:-1]:
            if not isinstance(node, dict):
                raise DialsumError(f"--set {item!r}: {k!r} is inside a value, not a section")
            if node.get(k) is None:  # a section the YAML leaves out: created, then checked by the schema
                node[k] = {}
            node = node[k]
        if not isinstance(node, dict):
            raise DialsumError(f"--set {item!r}: {keys[-1]!r} is inside a value, not a section")
        node[keys[-1]] = value
    return raw


def load_config(path: Path, overrides: dict | None = None, sets: list[str] | None = None) -> RunConfig:
    """Load a run config (YAML) with its model files, apply `--set` edits and overrides, validate."""
    path = Path(path).resolve()
    raw = read_yaml(path)
    base_dir = path.parent
    models = []
    for i, m in enumerate(raw.get("models", []) or []):
        try:
            models.append(load_model_dict(m, base_dir))
        except DialsumError as e:
            raise DialsumError(f"{path}: models[{i}]: {e}") from None
    raw["models"] = models
    raw = apply_sets(raw, sets)  # before paths are resolved: a --set path means what it means in the YAML
    for key in ("output_dir", "submissions_dir"):
        if key in raw:
            raw[key] = _resolve(base_dir, str(raw[key]))
    if isinstance(raw.get("data"), dict) and "dir" in raw["data"]:
        raw["data"]["dir"] = _resolve(base_dir, str(raw["data"]["dir"]))
    raw = deep_merge(raw, overrides or {})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise DialsumError(_format_validation(path, e, raw, sets)) from None


def load_model_config(path: Path) -> ModelConfig:
    path = Path(path).resolve()
    try:
        return ModelConfig.model_validate(load_model_dict(str(path), path.parent))
    except ValidationError as e:
        raise DialsumError(_format_validation(path, e)) from None


def vllm_lora_rank(r: int) -> int:
    """Smallest rank vLLM accepts as max_lora_rank that holds an adapter of rank r."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= r:
            return allowed
    raise DialsumError(f"LoRA rank {r} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")
