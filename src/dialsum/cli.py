"""Command line: parses arguments and dispatches to dialsum.commands; nothing else.

Each subcommand names its implementation as "module:function" under dialsum.commands, imported only when that
command runs, so `dialsum --help` imports nothing heavy, and heavy libraries (torch, transformers, peft) are only
imported inside stage child processes: `score`, `ensemble`, `postprocess` and `submit` start in well under a second.
Imports only dialsum.errors, dialsum.logs (the run log), dialsum.cli_types (every option's value checked as it is
parsed) and dialsum.stages (the stage kinds `--from-stage` accepts: that file imports nothing); nothing imports cli.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from dialsum.cli_types import (GPU_CARDS, Parser, between, count, existing_dir, existing_file, existing_path,
                               output_dir, output_file, split_counts)
from dialsum.errors import DialsumError
from dialsum.stages import RERUNNABLE

DEFAULT_CONFIG = "configs/default.yaml"
SET_HELP = ("edit the config as the same edit in the YAML would (repeatable): a dotted path, models by name, a YAML "
            "value, e.g. --set models.tiny.lora.r=32 --set postprocess.ablate=false --set generate.backend=vllm")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="dialsum", description="Korean dialogue summarisation with fine-tuned LLMs.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", default=DEFAULT_CONFIG, type=existing_file,
                        help="run config YAML (default: %(default)s)")
        sp.add_argument("--data-dir", type=existing_dir,
                        help="folder with train.csv, dev.csv, test.csv, sample_submission.csv")
        sp.add_argument("--run-id", help="run folder name under output_dir (default: <name>-<config/data hash>)")
        sp.add_argument("--output-dir", type=output_dir, help="override the config's output_dir (run folders)")
        sp.add_argument("--submissions-dir", type=output_dir, help="override the config's submissions_dir")
        sp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=SET_HELP)
        sp.add_argument("--limit", type=count(4), metavar="N",
                        help="smoke mode: at most N rows of each split (seeded, stratified by topic); writes "
                             "<run-id>-smoke.csv, never a real submission (data.limit)")
        talk = sp.add_mutually_exclusive_group()
        talk.add_argument("--quiet", action="store_true", help="only warnings and errors on the terminal (stage "
                                                               "output still goes to runs/<id>/logs/)")
        talk.add_argument("--verbose", action="store_true", help="also debug messages (stage inputs, cache hits)")

    sp = sub.add_parser("run", help="all stages: train, generate, ensemble, postprocess, submit, report")
    with_config(sp)
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.add_argument("--only-model", action="append", metavar="NAME",
                    help="train and generate only this model (repeatable), then stop before the ensemble")
    sp.add_argument("--parallel-models", type=count(1), metavar="N",
                    help="N models' pipelines at once, each a `run --only-model` process on its own GPU; then ensemble")
    sp.add_argument("--final", action="store_true", help="then refit on train + dev: <run-id>-final.csv (final.refit)")
    sp.add_argument("--from-stage", choices=RERUNNABLE, help="recompute this stage kind and every later one")
    sp.add_argument("--force", action="append", default=[], metavar="STAGE",
                    help="recompute this stage (e.g. train:tiny, or a kind: generate) and what depends on it")
    sp.set_defaults(func="runs:run")

    sp = sub.add_parser("build-tiny-model", help="build the tiny local Llama + tokenizer (CPU stand-in for an LLM)")
    sp.add_argument("out_dir", type=output_dir)
    sp.add_argument("--train", default="data/sample/train.csv", type=existing_file,
                    help="training CSV for the tokenizer (default: %(default)s)")
    sp.add_argument("--pretrain-steps", type=count(0), help="pre-training steps (causal LM / denoising)")
    sp.add_argument("--family", choices=["decoder", "seq2seq"], default="decoder",
                    help="a Llama (decoder) or a BART (seq2seq) (default: %(default)s)")
    sp.set_defaults(func="runs:build_tiny_model")

    sp = sub.add_parser("train", help="QLoRA fine-tuning of the configured models (best adapter by dev score)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="train only this model (repeatable)")
    sp.add_argument("--force", action="store_true", help="train from scratch even if this model's key is done")
    sp.add_argument("--dry-run", action="store_true", help="each model's plan: GPU memory and hours per stage")
    sp.add_argument("--gpu", choices=list(GPU_CARDS), help="--dry-run's card (default: the visible GPU, else rtx3090)")
    sp.add_argument("--hours", type=between(0, 1e6), metavar="H", help="--dry-run: does the run fit H hours?")
    sp.add_argument("--rehearsal", type=existing_file, metavar="JSON", help="--dry-run: a GPU rehearsal's "
                    "rehearsal.json: its measured utilisation for the card it ran on")
    sp.add_argument("--rows", type=split_counts, metavar="SPLIT=N,...", help="--dry-run: plan N rows of a split "
                    "(e.g. train=12457) from the data's token counts")
    sp.add_argument("--json", action="store_true", help="--dry-run: the plan as JSON")
    sp.set_defaults(func="runs:train")

    sp = sub.add_parser("generate", help="candidate summaries for dev and test (vLLM or transformers)")
    with_config(sp)
    sp.add_argument("--model", action="append", help="only this model (repeatable)")
    sp.add_argument("--backend", choices=["auto", "vllm", "hf"], help="override generate.backend")
    sp.add_argument("--adapter", type=existing_dir, help="a LoRA adapter folder from anywhere (then no training is needed)")
    sp.add_argument("--out", type=output_dir, help="also copy the candidate parts into this folder")
    sp.add_argument("--force", action="store_true", help="regenerate even if this key is done")
    sp.set_defaults(func="runs:generate")

    sp = sub.add_parser("ensemble", help="ROUGE-consensus (MBR) selection over candidates")
    sp.add_argument("--candidates", nargs="+", required=True, type=existing_path,
                    help="run folders (their dev and test candidates; one alone: the run's own ensemble stage), "
                         "candidate stores or part files, and prediction CSVs (fname, summary), in any mix")
    sp.add_argument("--out", required=True, type=output_file)
    sp.add_argument("--split", choices=["dev", "test", "all"], default="all",
                    help="split(s) to write when selecting from a run folder or store (default: %(default)s)")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--weights", help="source=weight,... (source = file stem, model or model/decoding); with "
                                      "--fit-refs the weights are not refitted but guarded (k-fold, one-SE rule)")
    sp.add_argument("--fit-refs", type=existing_file,
                    help="fit membership, weights and the quality prior on the fnames of this CSV "
                         "(fname + summary or summary1..K); nothing else informs a choice")
    sp.add_argument("--report", type=output_file, help="with --fit-refs: the fitted choices and k-fold estimate (JSON)")
    sp.add_argument("--scores", type=output_file,
                    help="write every candidate's utility, source and whether it was chosen (CSV)")
    sp.add_argument("--utility", choices=["mean", "rouge1", "rouge2", "rougeL"], default="mean",
                    help="consensus utility from the R1/R2/RL F1 matrices (default: %(default)s)")
    sp.add_argument("--workers", type=count(1), default=2, help="processes for tokenisation (default: %(default)s)")
    sp.set_defaults(func="ensemble:ensemble")

    sp = sub.add_parser("postprocess", help="apply post-processing rules; --ablate measures each on dev")
    sp.add_argument("--pred", required=True, type=existing_file, help="CSV with fname (or id) and summary")
    sp.add_argument("--out", type=output_file, help="write the processed CSV here")
    sp.add_argument("--rules", help="comma-separated rule names, in order (default: all)")
    sp.add_argument("--ablate", action="store_true", help="print each rule's dev gain and keep only helpful rules")
    sp.add_argument("--refs", type=existing_file, help="references CSV for --ablate (same as --fit-refs)")
    sp.add_argument("--fit-refs", type=existing_file, help="fit rules and length cap on the rows of --pred present "
                                                           "here (e.g. runs/<id>/dev_select.csv), then apply to every row")
    sp.add_argument("--fitted", type=existing_file,
                    help="apply a saved fit (JSON from --save-fit or a run's postprocess stage)")
    sp.add_argument("--save-fit", type=output_file, help="write the fitted choices as JSON")
    sp.add_argument("--length-cap", choices=["tune", "off"], default="tune",
                    help="with --ablate: tune a length cap (sentences / morphemes) on dev (default: %(default)s)")
    sp.add_argument("--max-sentences", type=count(1), help="fixed cap: keep at most this many sentences")
    sp.add_argument("--max-morphemes", type=count(1), help="fixed cap: whole sentences up to this many Mecab morphemes")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.set_defaults(func="postprocess:postprocess")

    sp = sub.add_parser("submit", help="write a validated submission CSV (never overwrites)")
    sp.add_argument("--pred", required=True, type=existing_file, help="CSV with fname (or id) and summary")
    sp.add_argument("--sample-submission", required=True, type=existing_file)
    sp.add_argument("--out-dir", default="submissions", type=output_dir)
    sp.add_argument("--run-id", required=True, help="file name stem")
    sp.set_defaults(func="score:submit")

    sp = sub.add_parser("submitted", help="record what the leaderboard said of an uploaded submission "
                                          "(submissions/log.csv, and the run's report)")
    sp.add_argument("file", type=existing_file, help="the submission CSV dialsum wrote (submissions/<run-id>.csv)")
    sp.add_argument("--public", required=True, type=between(0, 100), help="the public leaderboard score (0-100)")
    sp.add_argument("--private", type=between(0, 100), help="the private leaderboard score, once known")
    sp.add_argument("--note", help="free text kept in the log")
    sp.add_argument("--runs", type=existing_dir, help="runs folder to search (default: ../runs beside the file's folder)")
    sp.set_defaults(func="submissions:submitted")

    sp = sub.add_parser("submissions", help="the submission log: dev-report against the leaderboard")
    sp.add_argument("--dir", default="submissions", type=output_dir, help="the submissions folder")
    sp.add_argument("--runs", type=existing_dir, help="the runs folder (default: ../runs beside --dir)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func="submissions:submissions")

    sp = sub.add_parser("tune", help="Optuna study: LoRA rank/learning rate (train) or ensemble/post-processing (infer)")
    sp.add_argument("--config", default="configs/tune.yaml", type=existing_file, help="tuning YAML (default: %(default)s)")
    sp.add_argument("--trials", type=count(0), default=20, help="trials to add to the study; 0: only the held-out check "
                                                           "and summary of the study so far (default: %(default)s)")
    sp.add_argument("--workers", type=count(1), default=1, help="worker processes sharing the study (default: %(default)s)")
    sp.add_argument("--no-summary", action="store_true",
                    help="add trials only: no held-out check, plots or tuned YAML (machines that add trials to a "
                         "shared study; one `--trials 0` afterwards summarises)")
    sp.add_argument("--storage", help="storage URL (default: runs/tune/<study>/journal.log); sqlite:///x.db, "
                                      "postgresql://… for several machines")
    sp.add_argument("--study", help="study name (default: the YAML's `study`)")
    sp.add_argument("--space", choices=["train", "align", "infer"], help="override the YAML's `space`")
    sp.add_argument("--run", type=existing_dir, help="infer space: the run folder whose candidates to tune over "
                                  "(default: the run config's default run)")
    sp.add_argument("--data-dir", type=existing_dir, help="data to tune on (default: data.dir); the tuned YAML keeps it")
    sp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="edit the tuning YAML (repeatable), e.g. --set sampler.name=random --set train.epochs=[1,2]")
    sp.add_argument("--share-gpus", action="store_true", help="allow more workers than GPUs (sharing them in turn)")
    sp.add_argument("--worker", type=count(0), help=argparse.SUPPRESS)  # index of a worker process
    sp.set_defaults(func="tune:tune")

    sp = sub.add_parser("preview", help="one training row as the model is trained on it: trained tokens, stop "
                                        "tokens, BOS; --lengths: truncation with the model's tokenizer")
    with_config(sp)
    sp.add_argument("--model", action="append", metavar="NAME|YAML",
                    help="a model of the run config, or a model YAML (configs/models/x.yaml); repeatable; default all")
    sp.add_argument("--tokenizer", metavar="DIR", type=existing_dir, help="tokenizer folder, or a ../shared/checkpoints/<id> folder "
                                                        "(its real tokenizer, else a stand-in built from facts.json)")
    sp.add_argument("--row", type=count(0), default=0, help="training row to show (default 0)")
    sp.add_argument("--lengths", action="store_true", help="share of rows over max_input/max_new_tokens, per CSV")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func="preview:preview")

    sp = sub.add_parser("compare", help="is A really better than B? paired bootstrap interval and permutation "
                                        "p-value over the same dialogues")
    sp.add_argument("a", type=existing_path, help="predictions CSV (fname, summary), or a run folder (its dev-report)")
    sp.add_argument("b", type=existing_path, help="the same kind as A")
    sp.add_argument("--refs", type=existing_file, help="references CSV (fname + summary or summary1..K); run folders use their "
                                   "dev_report.csv")
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--samples", type=count(1), default=10000, help="resamples (default: %(default)s)")
    sp.add_argument("--seed", type=count(0), default=0, help="resampling seed (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help='print {"a", "b", "diff", "ci_low", "ci_high", "p_value", "n"}')
    sp.set_defaults(func="score:compare")

    sp = sub.add_parser("report", help="rebuild a finished run's report.html (per-dialogue explorer) from its folder")
    sp.add_argument("run_dir", type=existing_dir, help="runs/<id>")
    sp.add_argument("--open", action="store_true", help="open it in the default browser")
    sp.set_defaults(func="report:report")

    sp = sub.add_parser("score", help="leaderboard metric of a predictions CSV against references")
    sp.add_argument("--pred", required=True, type=existing_file)
    sp.add_argument("--refs", required=True, type=existing_file)
    sp.add_argument("--semantics", choices=["pltrdy", "rouge-score"], default="pltrdy")
    sp.add_argument("--tokenizer", choices=["mecab", "latin", "whitespace"], default="mecab")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--subset", action="store_true", help="score only the fnames in --refs (pred may hold more)")
    sp.set_defaults(func="score:score")
    return p


class Interrupted(KeyboardInterrupt):
    """SIGTERM (`kill`), handled as Ctrl-C is: stage children stopped, one line, exit 130, resumable."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the way out must not be interrupted again
    raise Interrupted("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    from dialsum.logs import to_file, warnings_to

    args = build_parser().parse_args(argv)
    warnings_to(None)  # library warnings go to the run log, not the terminal
    module, _, func = args.func.partition(":")
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding caller): its own signals are its business
        pass
    try:
        return getattr(importlib.import_module(f"dialsum.commands.{module}"), func)(args)
    except DialsumError as e:
        to_file(f"error: {e}")
        print(f"dialsum: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, no permission, ...: the environment's fault, said in one line
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"dialsum: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        to_file(f"interrupted by {'SIGTERM' if isinstance(e, Interrupted) else 'SIGINT'}: resume with the same command")
        sys.stderr.flush()
        print("dialsum: interrupted: resume with the same command", file=sys.stderr, flush=True)
        return 130
