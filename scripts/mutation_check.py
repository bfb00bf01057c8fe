"""Do the tests catch what they name? Each entry breaks one line of the code a claim rests on, in a copy of the tree,
runs only the tests that guard that claim, and reports `caught` (every named test, or a test of every named file,
fails), `partly` (some of them still pass) or `NOT CAUGHT` (all pass). Not part of
CI: an entry takes seconds to minutes. New claims about resume, held-out fitting or intervals add an entry.

    .venv/bin/python scripts/mutation_check.py                 # every entry
    .venv/bin/python scripts/mutation_check.py --list          # names and claims
    .venv/bin/python scripts/mutation_check.py resume-train bootstrap-without-replacement
    .venv/bin/python scripts/mutation_check.py --json out.json

The copy lives in a temporary folder beside a link to ../shared (the real data the tests read); the tests run there
with PYTHONPATH pointing at the copy's src/, so stage child processes import the mutated code too. A replacement
that does not match exactly one line of its file is reported as `stale` (the code moved: update the entry).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("src", "tests", "configs", "data", "bench", "scripts", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    old: str  # one whole line (leading spaces included), which must occur exactly once
    new: str  # what replaces it
    tests: tuple[str, ...]  # pytest node ids that must fail
    claim: str


T = "tests/"
MUTATIONS = [
    # ---- resume
    Mutation("resume-train", "src/dialsum/models/training.py",
             "    last = last_checkpoint(ckpt_dir) if resume else None", "    last = None",
             (T + "test_train.py::test_resume_after_kill_reaches_the_same_total_steps",
              T + "test_seq2seq.py::test_seq2seq_training_resumes_after_a_kill",
              T + "test_pipeline_faults.py::test_kill_9_across_stages_then_the_same_command_gives_the_same_bytes_and_one_writer"),
             "a killed training stage resumes from its last checkpoint instead of starting again"),
    Mutation("resume-align", "src/dialsum/align/run.py",
             "    resume = common.last_checkpoint(ckpt)",
             "    resume = None",
             (T + "test_align.py::test_a_killed_align_stage_resumes_with_the_checkpoints_policy",
              T + "test_align_cli.py::test_align_in_a_run_killed_resumed_reused_and_reported"),
             "a killed align stage resumes from its last checkpoint"),
    Mutation("resume-align-policy", "src/dialsum/align/common.py",
             "            model.load_adapter(str(root), active, is_trainable=True)", "            pass",
             (T + "test_align.py::test_a_killed_align_stage_resumes_with_the_checkpoints_policy",),
             "a resumed DPO/GRPO stage goes on with the checkpoint's policy, not the SFT weights"),
    Mutation("generation-journal", "src/dialsum/models/generation.py",
             "            missing = [i for i in range(len(chunks)) if i not in done]",
             "            missing = list(range(len(chunks)))",
             (T + "test_generate.py::test_sampling_resume_after_a_kill_mid_chunk_equals_an_uninterrupted_run",
              T + "test_generate.py::test_a_chunk_line_with_missing_candidates_is_redone"),
             "a resumed generation reuses its journaled chunks"),
    # ---- the align stage's decision
    Mutation("align-decision-ignored", "src/dialsum/stages/common.py",
             '        if res.get("kept"):', "        if False:",
             (T + "test_align_cli.py::test_align_in_a_run_killed_resumed_reused_and_reported",),
             "generation uses the aligned weights when the align stage kept them"),
    Mutation("align-keep-on-noise", "src/dialsum/align/run.py",
             "    return one_se_gain([a - b for a, b in zip(aligned_rows, sft_rows)])",
             "    return Gain(0.0, 0.0, sum(aligned_rows) > sum(sft_rows), 'higher')",
             (T + "test_align.py::test_aligned_weights_are_kept_only_beyond_one_standard_error",),
             "aligned weights are kept only beyond one standard error"),
    # ---- TRL's reference and the policy's precision
    Mutation("trl-ref-tag-rows", "src/dialsum/align/policy.py",
             "                twin.data = param.data.detach().clone().to(twin.dtype)", "                pass",
             (T + "test_align.py::test_dpo_reference_holds_the_sft_tag_rows_and_the_adapter_stays_fp32",
              T + "test_align.py::test_grpo_kl_to_the_reference_is_zero_at_the_first_step"),
             "TRL's reference adapter is the SFT policy, tag rows included"),
    Mutation("trl-bf16-policy", "src/dialsum/align/policy.py",
             "        params[name].data = value.to(params[name].device)", "        pass",
             (T + "test_align.py::test_dpo_reference_holds_the_sft_tag_rows_and_the_adapter_stays_fp32",),
             "the policy's trainable tensors stay the exact fp32 SFT tensors after TRL's constructor"),
    Mutation("brio-gradient-accumulation", "src/dialsum/align/rank.py",
             "        loss_is_scaled_for_ga = False", "        loss_is_scaled_for_ga = None",
             (T + "test_align.py::test_rank_loss_is_not_multiplied_by_gradient_accumulation",),
             "BRIO's loss is divided by gradient accumulation"),
    Mutation("dpo-cut-sample-end-token", "src/dialsum/align/dpo.py",
             "        if len(own) >= cfg.max_new_tokens - 1:  # as long as the limit allows: the limit, not the model, ended it",
             "        if False:",
             (T + "test_align.py::test_a_dpo_sample_cut_at_the_length_limit_gets_no_end_token",),
             "a DPO sample cut at the length limit keeps no end token"),
    # ---- held-out fitting and intervals
    Mutation("bootstrap-without-replacement", "src/dialsum/scoring/bootstrap.py",
             "    return np.random.default_rng(seed).integers(0, n, size=(samples, n)) if n else np.zeros((samples, 0), dtype=int)",
             "    return np.argsort(np.random.default_rng(seed).random((samples, n)), axis=1) if n else np.zeros((samples, 0), dtype=int)",
             (T + "test_bootstrap.py",),
             "bootstrap resamples dialogues with replacement (intervals have the width of the sampling noise)"),
    Mutation("ensemble-fit-sees-the-held-out-fold", "src/dialsum/ensemble/consensus.py",
             "            f = fit(train, n_sources)", "            f = fit(d, n_sources)",
             (T + "test_ensemble_fit.py",),
             "the ensemble's k-fold estimate fits on the other folds only"),
    Mutation("cap-judged-in-sample", "src/dialsum/postprocess/rules.py",
             "            best = max(range(len(by_cap)), key=lambda c: (by_cap[c][train].mean(), -c))  # ties: grid order",
             "            best = max(range(len(by_cap)), key=lambda c: (by_cap[c][rows].mean(), -c))  # ties: grid order",
             (T + "test_postprocess.py",),
             "a length cap is chosen on the other folds and judged on the held-out one"),
    Mutation("cap-selection-not-nested", "src/dialsum/postprocess/rules.py",
             "            pick = _cap_choice(by_cap, base, np.setdiff1d(np.arange(n), part), k, seeds)",
             "            pick = _cap_choice(by_cap, base, np.arange(n), k, seeds)",
             (T + "test_postprocess.py::test_nested_selection_refuses_a_noise_cap_the_plain_rule_keeps_and_keeps_a_real_one",),
             "a length cap's selection is judged on outer folds it never saw"),
    # ---- final refit (each entry runs the session's seed pipeline first: minutes)
    Mutation("refit-without-dev", "src/dialsum/stages/refit.py",
             "    return data.train + data.dev + pseudo, len(pseudo)",
             "    return data.train + pseudo, len(pseudo)",
             (T + "test_final_refit.py::test_the_refit_trains_on_every_dev_row_writes_both_submissions_and_reruns_nothing",),
             "the final refit trains on every dev row"),
    Mutation("final-choices-not-applied", "src/dialsum/stages/final.py",
             "        i = voting.pick(d)",
             "        i = 0",
             (T + "test_final_refit.py::test_the_refit_trains_on_every_dev_row_writes_both_submissions_and_reruns_nothing",),
             "the final refit applies the ensemble's dev-fitted voting unchanged"),
    Mutation("probe-on-references", "src/dialsum/stages/refit.py",
             "        extra = [Dialogue(d.fname, d.dialogue, picks[\"dev\"][d.fname][0], d.topic) for d in data.dev",
             "        extra = [Dialogue(d.fname, d.dialogue, d.summary, d.topic) for d in data.dev",
             (T + "test_final_refit.py::test_pseudo_labels_are_measured_on_dev_report_with_the_ensembles_picks_never_the_references",),
             "the pseudo-label probe trains on the ensemble's picks, never dev-report's references"),
    Mutation("resume-half-written-checkpoint", "src/dialsum/models/training.py",
             "        if (p / \"trainer_state.json\").is_file():",
             "        if True:",
             (T + "test_train.py::test_resume_after_kill_reaches_the_same_total_steps",),
             "a resume skips a checkpoint a kill left half-written"),
    # ---- time plan
    Mutation("time-plan-no-weight-gradients", "src/dialsum/models/time_plan.py",
             "    backward = 2.0 * (frozen + trained) + 2.0 * trained + 2.0 * attention",
             "    backward = 2.0 * (frozen + trained) + 2.0 * attention",
             (T + "test_time_plan.py::test_the_flops_of_a_training_token_are_the_hand_count_of_the_tiny_llama",),
             "a training token's FLOPs count the trained weights' gradients"),
    Mutation("time-plan-rehearsal-ignored", "src/dialsum/models/time_plan.py",
             "    return replace(card, utilisation={**card.utilisation, **util},",
             "    return replace(card, utilisation=card.utilisation,",
             (T + "test_time_plan.py::test_a_rehearsal_measured_on_the_card_replaces_the_assumed_utilisation",),
             "a GPU rehearsal's measured utilisation replaces the assumed one for its card"),
    # ---- memory plan
    Mutation("memory-nf4-bits", "src/dialsum/models/memory.py",
             "        return n / 2 + n / 64 + n / 64 / 256 * 4 + inv.quantizable_modules * 1100  # + each module's code tables",
             "        return n * 0.98 + n / 64 + n / 64 / 256 * 4 + inv.quantizable_modules * 1100",
             (T + "test_memory_plan.py",),
             "nf4 is planned at ~4.1 bits per weight, as bitsandbytes packs it"),
    Mutation("memory-paged-adamw-8bit", "src/dialsum/models/memory.py",
             "    return float(sum(2 * n + 2 * math.ceil(n / 256) * 4 if n >= 4096 else 8 * n for n in sizes))",
             "    return float(sum(8 * n for n in sizes))",
             (T + "test_memory_plan.py",),
             "paged 8-bit AdamW's state is planned as bitsandbytes allocates it"),
    Mutation("memory-loss-head", "src/dialsum/models/memory.py",
             "        head = tokens * vocab * 12.0 + 2 * head_w", "        head = 2 * head_w",
             (T + "test_memory_plan.py::test_plan_predicts_the_measured_peak_of_a_qlora_training_step",),
             "a training step's plan counts the loss head's log-softmax and gradients"),
    Mutation("memory-trl-tile", "src/dialsum/models/memory.py",
             "        tile = min(tokens, TRL_TOKEN_TILE) * TRL_VOCAB_TILE * cb", "        tile = tokens * vocab * cb",
             (T + "test_memory_plan.py::test_plan_predicts_the_measured_peak_of_a_dpo_step",),
             "a DPO step's plan counts TRL's fixed log-prob tile"),
    Mutation("lean-adapter-saves", "src/dialsum/models/loading.py",
             "        model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_embedding_layers=False)",
             "        pass",
             (T + "test_train.py::test_qlora_training_loss_falls_scores_dev_and_saves_a_reloadable_best_adapter",),
             "adapters and checkpoints hold no whole embedding matrices"),
    # ---- generation and hardware
    Mutation("vllm-backend-selection", "src/dialsum/models/generation.py",
             '    if backend == "vllm":', '    if False:',
             (T + "test_vllm_backend.py::test_vllm_greedy_equals_hf_greedy_with_and_without_lora_on_a_pretagged_base",),
             "generate.backend vllm generates with vLLM"),
    Mutation("vllm-dtype", "src/dialsum/models/vllm_backend.py",
             '    return {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[compute_dtype(cfg.precision)]',
             '    return "bfloat16" if torch.cuda.is_available() or cfg.precision == "bf16" else "float32"',
             (T + "test_hardware.py::test_vllm_serves_in_the_compute_dtype_training_and_merging_use",),
             "vLLM serves in the compute dtype (fp16 on cards without bf16)"),
    Mutation("gpu-probe-without-proc", "src/dialsum/hardware.py",
             "    return _smi_gpus(smi) if smi else 0", "    return 0",
             (T + "test_hardware.py::test_a_driver_without_proc_entries_is_asked_through_nvidia_smi",),
             "GPUs are found where the driver has no /proc entries (WSL2)"),
    Mutation("qlora-as-plain-lora", "src/dialsum/models/loading.py",
             '    if quantization == "4bit":', '    if False:',
             (T + "test_real_checkpoints.py::test_train_and_generate_with_the_checkpoints_format",),
             "a QLoRA model is trained on a 4-bit base, not silently as plain LoRA"),
    Mutation("seeded-samples-all-alike", "src/dialsum/models/hf_backend.py",
             "                    j = row * n_ret + k", "                    j = row * n_ret",
             (T + "test_generate.py::test_counts_provenance_and_seeded_reproducibility",),
             "n samples of a dialogue are n different draws, and another seed draws others"),
]


def apply(mutation: Mutation, tree: Path) -> bool:
    path = tree / mutation.file
    lines = path.read_text(encoding="utf-8").split("\n")
    hits = [i for i, line in enumerate(lines) if line == mutation.old]
    if len(hits) != 1:
        return False
    lines[hits[0]] = mutation.new
    path.write_text("\n".join(lines), encoding="utf-8")
    return True


def _guards(target: str, failed: str) -> bool:
    """Whether a failed node id belongs to a named target: a whole file, a test, or one of its parametrisations."""
    if "::" not in target:
        return failed.startswith(target + "::")
    return failed == target or failed.startswith(target + "[")


def check(mutation: Mutation, timeout: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{mutation.name}-"))
    try:
        tree = work / ROOT.name
        tree.mkdir()
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copy2(src, tree / name)
        if (ROOT.parent / "shared").exists():
            (work / "shared").symlink_to(ROOT.parent / "shared")
        if not apply(mutation, tree):
            return {"name": mutation.name, "result": "stale (the line is not in the file once)", "seconds": 0.0,
                    "missed": list(mutation.tests), "failed": []}
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-n", "0", "-p", "no:cacheprovider",
                                *mutation.tests], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            code, out = r.returncode, (r.stdout + r.stderr)
        except subprocess.TimeoutExpired as e:
            code, out = -1, f"timed out after {timeout} s: {e}"
        failed = {ln.split()[1] for ln in out.splitlines() if ln.startswith(("FAILED ", "ERROR ")) and len(ln.split()) > 1}
        missed = [t for t in mutation.tests if not any(_guards(t, f) for f in failed)]
        if code not in (0, 1):
            result = f"error (pytest exit {code})"
        elif not missed:
            result = "caught"
        else:
            result = "NOT CAUGHT" if len(missed) == len(mutation.tests) else f"partly ({len(missed)} passed)"
        return {"name": mutation.name, "result": result, "seconds": round(time.time() - t0, 1), "missed": missed,
                "failed": sorted(failed)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="entries to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the entries and their claims")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per entry (default: %(default)s)")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        print(f"mutation_check: no entry {sorted(unknown)}; --list shows them", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name:<38} {m.file}: {m.claim}")
        return 0
    results = []
    for m in chosen:
        r = check(m, args.timeout)
        results.append({**r, "claim": m.claim, "file": m.file, "tests": list(m.tests)})
        print(f"{r['result']:<12} {m.name:<38} {r['seconds']:>7.1f} s  {m.claim}", flush=True)
    caught = sum(r["result"] == "caught" for r in results)
    print(f"\n{caught} of {len(results)} mutations caught")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
