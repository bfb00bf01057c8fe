"""GPU rehearsal without downloads: the product's GPU path on models of real members' exact shapes, random weights.

    .venv/bin/python bench/gpu_rehearsal.py                 # on a GPU machine: ~8 min planned, --budget-s 480
    .venv/bin/python bench/gpu_rehearsal.py --tiny          # the same script on CPU with the tiny models (a test runs it)
    .venv/bin/python bench/gpu_rehearsal.py --gpus 2        # two models at once, one per GPU (`run --only-model`)

It builds locally (random weights) a decoder-only model from SOLAR-10.7B-Instruct's real config (hidden 4096,
GQA 32/8 heads of 128, MLP 14336, 32,000-row vocabulary, untied head; depth cut from 48 to 6 layers to fit the
budget) carrying SOLAR's special tokens, BOS behaviour and verbatim chat template (dialsum.standins, from
../shared/checkpoints), and a seq2seq model from KoBART's config (digit82/kobart-summarization: 30,000 rows, <s>0
</s>1 <pad>3, decoder start </s>), each with a tokenizer trained on the sample dialogues. Neither vocabulary has the
competition's tags, as no real one does. Then it runs dialsum's own stage engine over the shipped sample data: 4-bit
QLoRA training steps on the decoder with SOLAR's chat prompts (the appended end token, one BOS), vLLM generation
through the merged checkpoint (greedy, sampling n=4, beam 4) — the transformers path on CPU or without vLLM —, full
fine-tuning in fp32 master weights under bf16 autocast and transformers generation for the seq2seq model, the fitted
ensemble, post-processing and a submission. What depends on shapes, templates and vocabularies, not on trained
weights, is what it proves: bitsandbytes' CUDA kernels, tag rows trained and served, vLLM loading a merged bf16
checkpoint, GPU memory going back to its baseline after each stage's child process exits, throughput.

The decoder is also aligned with DPO after SFT (a few steps on pairs of its own samples: the `prefs` and `align`
stages, tag rows trained, TRL's reference adapter, the keep decision scored through the generation engine), and
generates once more with `generate.quantization: 8bit` (vLLM's online fp8 on a GPU; bitsandbytes 8-bit with --tiny).

Per stage it records wall time, training tokens/s, generation tokens/s, the memory plan's number for the stage
(dialsum.models.memory, as `train --dry-run` prints it), peak GPU memory (nvidia-smi, sampled every 0.2 s) and the GPU
memory in use after the stage (must equal the baseline); JSON + a Markdown table under --out. vLLM runs eagerly
(`enforce_eager`: starts in seconds; the prefs, align and 8-bit stages each start an engine). With `--gpus N` (N >= 2)
the two models' pipelines run at once as `dialsum run --only-model NAME`, each process seeing one GPU, and a plain
`dialsum run` then ensembles: per pipeline its wall time and that GPU's peak. The
plan is printed first; the script stops cleanly before a stage that would not fit the --budget-s time budget.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FACTS = ROOT.parent / "shared" / "checkpoints"
# upstage/SOLAR-10.7B-Instruct-v1.0's config.json (Llama architecture, Mistral-7B's widths), 6 of its 48 layers
SOLAR_CUT = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=6,
                 num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
                 rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
SOLAR_PARAMS_B = 1.57  # 6 x 218M per layer + 2 x 32000 x 4096 embedding/head rows
KOBART = dict(vocab_size=30000, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=16,
              decoder_attention_heads=16, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1026)
FIELDS = ("stage", "status", "wall_s", "train_tokens_per_s", "gen_tokens_per_s", "planned_gpu_mib", "peak_gpu_mib",
          "gpu_mib_after", "baseline_gpu_mib", "back_to_baseline")
# planned seconds per stage kind on one H100-class GPU (and on 2 CPU cores with --tiny)
PLAN_S = {"gpu": {"build": 45, "train": 45, "prefs": 40, "align": 60, "generate": 60, "generate8": 50, "ensemble": 10,
                  "postprocess": 5, "submit": 2},
          "tiny": {"build": 25, "train": 25, "prefs": 15, "align": 25, "generate": 20, "generate8": 20, "ensemble": 5,
                   "postprocess": 2, "submit": 1}}


# ---------------------------------------------------------------- GPU memory (nvidia-smi; the parent never imports torch)
def gpu_used_mib(index: int = 0) -> int | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class PeakSampler:
    def __init__(self, index: int = 0):
        self.index = index
        self.peak: int | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = gpu_used_mib(self.index)
            if v is not None:
                self.peak = v if self.peak is None else max(self.peak, v)
            self._stop.wait(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)


# ---------------------------------------------------------------- building the models (child processes)
def build(kind: str, out: Path, tiny: bool) -> None:
    """Random weights in a real member's exact shape, the sample-data tokenizer; saved with save_pretrained."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, LlamaConfig, LlamaForCausalLM

    from dialsum.config import TinyModelSpec
    from dialsum.io.data import load_competition
    from dialsum.models.tiny import _save, build_tiny_model

    data = load_competition(ROOT / "data" / "sample")
    if tiny:
        build_tiny_model(out, data.train, TinyModelSpec(pretrain_steps=30), "seq2seq" if kind == "seq2seq" else "decoder")
        return
    from dialsum.models.standins import build_standin_tokenizer, generation_eos, load_facts

    texts = [d.dialogue for d in data.train] + [d.summary for d in data.train]
    # the real checkpoints' special tokens, BOS behaviour and template; no tags in either vocabulary (as in every
    # real one): dialsum adds and trains them, and vLLM serves the trained model through a merged checkpoint
    folder = FACTS / ("upstage__SOLAR-10.7B-Instruct-v1.0" if kind == "decoder" else "digit82__kobart-summarization")
    tok = build_standin_tokenizer(folder, texts, 4000)
    torch.manual_seed(0)
    special = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if kind == "decoder":
        model = LlamaForCausalLM(LlamaConfig(**SOLAR_CUT, **special, torch_dtype="bfloat16")).to(torch.bfloat16)
    else:
        eos = tok.eos_token_id  # KoBART: the decoder starts with </s>, forced eos </s>
        model = BartForConditionalGeneration(BartConfig(**KOBART, **special, decoder_start_token_id=eos,
                                                        forced_eos_token_id=eos))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = generation_eos(tok, load_facts(folder), folder)[0]
    _save(model, tok, out)


# ---------------------------------------------------------------- the run
def run_config(work: Path, models: dict[str, Path], tiny: bool, backend: str) -> Path:
    import yaml

    steps = 6 if tiny else 30
    # tiny: 6 training steps teach no end token, so every candidate runs to max_new_tokens (kept short: code paths)
    common = {"max_input_tokens": 384, "max_new_tokens": 24 if tiny else 64,
              "params_billion": 0.0005 if tiny else SOLAR_PARAMS_B}
    dec = {"name": "solar-shape", "path": str(models["decoder"]), "model_type": "llama",
           "prompt_format": "instruction" if tiny else "chat",
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "quantization": "4bit", "precision": "fp32" if tiny else "bf16", "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
           "train": {"learning_rate": 2e-4, "max_steps": steps, "batch_size": 4, "eval_steps": steps, "logging_steps": 2,
                     "eval_subset": 4, "early_stopping_patience": None},
           "decodings": [{"name": "greedy"}, {"name": "sample4", "strategy": "sample", "n": 4, "temperature": 0.8, "seed": 1},
                         {"name": "beam4", "strategy": "beam", "num_beams": 4, "n": 1}],
           # DPO after SFT: pairs of its own samples (min_margin 0: random weights give close scores), a few steps
           "align": {"method": "dpo", "rows": 8, "samples": 4, "min_margin": 0.0, "steps": 3, "save_steps": 3,
                     "batch_size": 2, "learning_rate": 1e-4, "eval_rows": 4, "heldout": 0.25}, **common}
    s2s = {"name": "kobart-shape", "family": "seq2seq", "path": str(models["seq2seq"]), "model_type": "bart",
           "finetune": "full", "quantization": "none", "precision": "fp32" if tiny else "bf16",
           "target_modules": ["q_proj", "v_proj"],
           "train": {"learning_rate": 5e-5, "max_steps": steps, "batch_size": 8, "eval_steps": steps, "logging_steps": 2,
                     "eval_subset": 4, "early_stopping_patience": None},
           "decodings": [{"name": "greedy"}, {"name": "beam4", "strategy": "beam", "num_beams": 4, "n": 1}], **common}
    if not tiny:
        s2s["params_billion"] = 0.124
    cfg = {"name": "rehearsal", "seed": 42, "output_dir": str(work / "runs"), "submissions_dir": str(work / "subs"),
           "data": {"dir": str(ROOT / "data" / "sample")}, "models": [dec, s2s],
           "generate": {"backend": backend, "batch_size": 16, "gpu_memory_utilization": 0.6, "max_model_len": 512,
                        "enforce_eager": True},
           "ensemble": {"cv_folds": 3}}
    path = work / "rehearsal.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def token_count(model_dir: Path, texts: list[str]) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return sum(len(e.ids) for e in tok.encode_batch(texts))


def main() -> int:
    from dialsum.cli_types import GPU_CARDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU: the tiny models, transformers backend")
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop before a stage that would not fit (s)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "rehearsal"), help="work folder; JSON and Markdown land here")
    ap.add_argument("--backend", choices=["vllm", "hf"], help="default: vllm on a GPU, hf with --tiny")
    ap.add_argument("--gpus", type=int, default=1, help="N >= 2: the two models' pipelines at once, one GPU each")
    ap.add_argument("--card", choices=GPU_CARDS, help="the time plan's card the measured utilisation is for (default: the device's; "
                                   "with --tiny on CPU, name one to rehearse that path: the numbers mean nothing)")
    ap.add_argument("--build", nargs=2, metavar=("KIND", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        build(args.build[0], Path(args.build[1]), args.tiny)
        return 0
    start = time.time()
    work = Path(args.out).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    mode = "tiny" if args.tiny else "gpu"
    backend = args.backend or ("hf" if args.tiny else "vllm")
    gpu_name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() if shutil.which("nvidia-smi") else None
    if not args.tiny and not (FACTS / "README.md").is_file():
        print(f"rehearsal: {FACTS} is needed (SOLAR's and KoBART's facts)", file=sys.stderr)
        return 2
    plan = [("build:decoder", "build"), ("build:seq2seq", "build"), ("train:solar-shape", "train"),
            ("prefs:solar-shape", "prefs"), ("align:solar-shape", "align"), ("generate:solar-shape", "generate"),
            ("train:kobart-shape", "train"), ("generate:kobart-shape", "generate"), ("ensemble", "ensemble"),
            ("postprocess", "postprocess"), ("submit", "submit"), ("generate:solar-shape (8bit)", "generate8")]
    total = sum(PLAN_S[mode][k] for _, k in plan)
    print(f"rehearsal plan ({mode}, backend {backend}, device {gpu_name or 'CPU'}), budget {args.budget_s:.0f} s, "
          f"planned {total} s:", flush=True)
    for name, kind in plan:
        print(f"  {name:<26} ~{PLAN_S[mode][kind]} s", flush=True)
    baseline = gpu_used_mib()
    records, models = [], {}

    def timed(name: str, kind: str, fn) -> dict | None:
        planned = PLAN_S[mode][kind]
        if time.time() - start + planned > args.budget_s:
            records.append({**{f: None for f in FIELDS}, "stage": name, "status": "skipped (budget)"})
            print(f"[rehearsal] {name}: skipped, {planned} s would exceed the {args.budget_s:.0f} s budget", flush=True)
            return None
        t0 = time.time()
        with PeakSampler() as peak:
            result = fn()
        after = gpu_used_mib()
        rec = {f: None for f in FIELDS} | {"stage": name, "status": "ok", "wall_s": round(time.time() - t0, 3),
                                            "peak_gpu_mib": peak.peak, "gpu_mib_after": after,
                                            "baseline_gpu_mib": baseline,
                                            "back_to_baseline": None if after is None else after <= (baseline or 0) + 64}
        records.append(rec)
        print(f"[rehearsal] {name}: {rec['wall_s']} s, peak GPU {peak.peak} MiB, after {after} MiB", flush=True)
        return result

    for kind in ("decoder", "seq2seq"):
        out = work / "models" / kind
        timed(f"build:{kind}", "build", lambda: subprocess.run(
            [sys.executable, __file__, "--build", kind, str(out), *(["--tiny"] if args.tiny else [])], check=True))
        models[kind] = out
    if not all((m / "config.json").is_file() for m in models.values()):
        return finish(work, records, gpu_name, mode, backend, start)

    from dialsum.config import load_config
    from dialsum.stages.pipeline import engine_for
    from dialsum.stages.plan import Plan
    from dialsum.engine.run_folder import open_run

    cfg_path = run_config(work, models, args.tiny, backend)
    cfg = load_config(cfg_path)
    planned = planned_mib(cfg)
    for name, mib in planned.items():
        print(f"[rehearsal] memory plan {name}: {mib} MiB", flush=True)
    if args.gpus >= 2:
        parallel_models(work, cfg_path, cfg, args.gpus, records, baseline, planned)
        return finish(work, records, gpu_name, mode, backend, start, cfg, args.card)
    ctx = open_run(cfg)
    eng = engine_for(ctx)
    stages = Plan.full(ctx).stages
    for st in stages:
        kind = st.kind
        if kind == "build":
            continue
        res = timed(st.name, kind, lambda st=st: eng.run(st))
        if res is None:
            break
        rec = records[-1]
        rec["planned_gpu_mib"] = planned.get(st.name)
        if kind == "train":
            state = sorted((st.out_dir(ctx.cache) / "checkpoints").glob("checkpoint-*/trainer_state.json"))
            seen = json.loads(state[-1].read_text()).get("num_input_tokens_seen", 0) if state else 0
            rec["train_tokens_per_s"] = round(seen / rec["wall_s"], 1) if seen else None
        if kind == "generate":
            rec["gen_tokens_per_s"] = gen_rate(res, models["decoder" if "solar" in st.name else "seq2seq"], rec)
    else:
        generate_8bit(cfg_path, models, records, timed, planned)
    return finish(work, records, gpu_name, mode, backend, start, cfg, args.card)


def gen_rate(result: dict, model_dir: Path, rec: dict) -> float:
    from dialsum.io.candidates import read_part

    texts = [c.text for p in result["parts"] for c in read_part(Path(p))]
    return round(token_count(model_dir, texts) / rec["wall_s"], 1)


def generate_8bit(cfg_path: Path, models: dict, records: list, timed, planned: dict) -> None:
    """The decoder's generate stage once more at `generate.quantization: 8bit` (its own key), from the SFT weights
    (without `align`, whose keep decision is scored the way generation runs and would be re-made at 8 bits): vLLM's
    online fp8 of the merged checkpoint on a GPU, bitsandbytes 8-bit Linear layers with transformers on CPU."""
    from dialsum.config import load_config
    from dialsum.stages.pipeline import engine_for
    from dialsum.stages.plan import Plan
    from dialsum.engine.run_folder import open_run

    cfg = load_config(cfg_path, {"generate": {"quantization": "8bit"}}, sets=["models.solar-shape.align.method=none"])
    ctx = open_run(cfg, lock=False)
    eng = engine_for(ctx)
    stage = next(s for s in Plan.full(ctx).stages if s.name == "generate:solar-shape")
    res = timed("generate:solar-shape (8bit)", "generate8", lambda: eng.run(stage))
    if res is not None:
        rec = records[-1]
        rec["planned_gpu_mib"] = planned.get("generate:solar-shape (8bit)")
        rec["gen_tokens_per_s"] = gen_rate(res, models["decoder"], rec)


def planned_mib(cfg) -> dict[str, int]:
    """The dry-run plan per model stage, in MiB (what `dialsum train --dry-run` prints for the same config)."""
    from dialsum.models.memory import estimate_gpu_gib

    from dialsum.models.memory import generation_gib

    out = {}
    for m in cfg.models:
        est = estimate_gpu_gib(m, cfg.generate)
        out[f"train:{m.name}"], out[f"generate:{m.name}"] = round(est["train"] * 1024), round(est["generate"] * 1024)
        if "align" in est:  # prefs samples with the generation engine; align trains, then scores through it
            out[f"prefs:{m.name}"] = out[f"generate:{m.name}"]
            out[f"align:{m.name}"] = round(max(est["align"], est["generate"]) * 1024)
        backend = "vllm" if cfg.generate.backend in ("vllm", "auto") and m.family == "decoder" else "hf"
        gib8 = generation_gib(m, cfg.generate, "8bit", None, backend)
        if gib8 is not None:
            out[f"generate:{m.name} (8bit)"] = round(gib8 * 1024)
    return out


def parallel_models(work: Path, cfg_path: Path, cfg, gpus: int, records: list, baseline, planned: dict) -> None:
    """`dialsum run --only-model NAME` per model at once, process i seeing GPU i (the README's recipe), then a plain
    `dialsum run` that finds every model stage cached and ensembles."""
    import os

    names = [m.name for m in cfg.models][:gpus]
    procs, samplers, t0 = [], [], time.time()
    for i, name in enumerate(names):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i)}
        log = open(work / f"pipeline-{name}.log", "w")
        procs.append((name, i, subprocess.Popen([sys.executable, "-m", "dialsum", "run", "--config", str(cfg_path),
                                                 "--only-model", name], cwd=ROOT, env=env, stdout=log,
                                                stderr=subprocess.STDOUT)))
        samplers.append(PeakSampler(i).__enter__())
    for (name, i, proc), sampler in zip(procs, samplers):
        rc = proc.wait()
        sampler.__exit__(None)
        rec = {f: None for f in FIELDS} | {"stage": f"pipeline:{name} (GPU {i})", "status": "ok" if rc == 0 else
                                            f"exit {rc}", "wall_s": round(time.time() - t0, 3),
                                            "planned_gpu_mib": max(planned.get(f"train:{name}", 0),
                                                                   planned.get(f"generate:{name}", 0)) or None,
                                            "peak_gpu_mib": sampler.peak, "gpu_mib_after": gpu_used_mib(i),
                                            "baseline_gpu_mib": baseline}
        records.append(rec)
        print(f"[rehearsal] {rec['stage']}: {rec['status']}, {rec['wall_s']} s, peak {sampler.peak} MiB", flush=True)
    t1 = time.time()
    rc = subprocess.run([sys.executable, "-m", "dialsum", "run", "--config", str(cfg_path)], cwd=ROOT,
                        capture_output=True, text=True).returncode
    records.append({f: None for f in FIELDS} | {"stage": "run (ensemble, postprocess, submit)",
                                                "status": "ok" if rc == 0 else f"exit {rc}",
                                                "wall_s": round(time.time() - t1, 3)})


def throughput(cfg, records: list[dict], gpu_name: str | None, card_key: str | None = None) -> dict | None:
    """What `dialsum train --dry-run --rehearsal rehearsal.json` uses on this card: per mode the utilisation that
    makes the time plan's seconds for each rehearsed stage equal its measured wall time (the assumed utilisation x
    planned / measured; the wall time includes loading and evaluation, so it errs on the slow side). Written only
    when the device is one of the plan's cards."""
    from dialsum.models.preview import competition_files
    from dialsum.models.time_plan import CARDS, card_of_name, plan_run

    key = card_key or card_of_name(gpu_name)
    if cfg is None or key is None:
        return None
    card = CARDS[key]
    splits = {k: v for k, v in competition_files(cfg.data.dir).items() if k in ("train", "dev", "test")}
    plan = plan_run(cfg, cfg.models, splits, card)
    util = {}
    for m, p in zip(cfg.models, plan["models"]):
        for stage, modes in (("train", [m.method]), ("generate", ["prefill", "decode"])):
            rec = next((r for r in records if r["stage"] == f"{stage}:{m.name}" and r["status"] == "ok"), None)
            if rec and rec["wall_s"]:
                ratio = p["stages"][stage]["seconds"] / rec["wall_s"]
                for mode in modes:
                    got = float(f"{min(util.get(mode, 1.0), card.utilisation[mode] * ratio):.4g}")  # the slower
                    util[mode] = got
    return {"card": key, "device": gpu_name or "CPU", "utilisation": util} if util else None


def finish(work: Path, records: list[dict], gpu_name: str | None, mode: str, backend: str, start: float,
           cfg=None, card: str | None = None) -> int:
    summary = {"device": gpu_name or "CPU", "mode": mode, "backend": backend, "total_s": round(time.time() - start, 1),
               "stages": records, "throughput": throughput(cfg, records, gpu_name, card)}
    (work / "rehearsal.json").write_text(json.dumps(summary, indent=2))
    head = ("| stage | status | wall s | train tok/s | gen tok/s | planned MiB | peak GPU MiB | GPU MiB after | baseline "
            "| back to baseline |")
    lines = [f"GPU rehearsal on {summary['device']} ({mode}, {backend}), {summary['total_s']} s in all", "", head,
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        lines.append("| " + " | ".join("—" if r[f] is None else str(r[f]) for f in FIELDS) + " |")
    (work / "rehearsal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
