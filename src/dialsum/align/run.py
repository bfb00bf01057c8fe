"""One model's alignment, end to end inside the align stage's child: train with the configured method, measure the
method's own objective on held-out train dialogues before and after, then score the SFT and the aligned weights on
dev the way generation will use them (generation's backend and quantisation, greedy decoding), and keep the aligned
weights only when their per-row gain on dev-select exceeds one standard error (dialsum's rule for every choice).

Writes into `out`: `adapter/` or `model/` (only when kept), `align_result.json` (scores, decision, held-out
objective, training curve), `rewards.csv` (grpo: every completion's reward), `checkpoints/` (resume after a kill),
`scoring/` (the greedy dev candidates of both, journaled like any generation).
"""
from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

from dialsum import faults
from dialsum.align import common
from dialsum.align.common import dev_score
from dialsum.align.preferences import Ranked, split_heldout
from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig
from dialsum.io.data import Dialogue
from dialsum.io.files import atomic_write_json
from dialsum.logs import log
from dialsum.models.training import step_counter
from dialsum.scoring.bootstrap import Gain, one_se_gain


METHODS = {"dpo": "dpo", "grpo": "grpo", "rank": "rank"}  # align.method -> its module (prepare, CURVE)


def _once(path: Path, compute):
    """A measurement of the policy before training, taken once: a resumed stage reads it back instead of measuring
    a half-trained model."""
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    value = compute()
    atomic_write_json(path, value)
    return value


def align_model(cfg: ModelConfig, base_path: str, sft_weights: Path, rows: list[Dialogue],
                select_rows: list[Dialogue], report_rows: list[Dialogue], prefs: list[Ranked] | None, out: Path,
                metric: dict, callbacks: list | None = None, gen: GenerateSpec | None = None) -> dict:
    """`gen`: how the generate stage will decode with the weights this returns (backend, quantisation, batch);
    the keep decision is scored that way."""
    from dialsum.align.policy import load_policy, save_policy

    spec = cfg.align
    gen = gen or GenerateSpec()
    out.mkdir(parents=True, exist_ok=True)
    sel, rep = select_rows[: spec.eval_rows], report_rows[: spec.eval_rows]
    tokenizer, model, stops = load_policy(cfg, base_path, sft_weights)
    by_fname = {d.fname: d for d in rows}
    fit_names, held_names = split_heldout(list(by_fname), spec.heldout, spec.seed)
    ckpt = out / "checkpoints"
    counter = step_counter()
    cbs = [counter, *(callbacks or [])]
    result: dict = {"method": spec.method, "rows": len(rows), "heldout_rows": len(held_names)}
    scores = _Scorer(cfg, base_path, sel, rep, out / "scoring", gen, metric)

    if spec.method not in METHODS:
        raise ValueError(f"align.method {spec.method!r} has no trainer")
    method = importlib.import_module(f"dialsum.align.{METHODS[spec.method]}")  # TRL loads only for its method
    prep = method.prepare(common.Setup(model, tokenizer, cfg, by_fname, fit_names, held_names, prefs, stops, ckpt,
                                       cbs, metric, out))
    result.update(prep.counts)
    if isinstance(prep, common.NothingToTrain):
        why = prep.reason
        del model, prep  # generation's engine scores SFT next: the policy must not hold the card meanwhile
        return _fallback(out, result, why, scores, sft_weights)
    trainer, measure, keys = prep.trainer, prep.measure, method.CURVE
    before = _once(out / "heldout_before.json", measure)
    resume = common.last_checkpoint(ckpt)
    if resume:
        log(f"align {cfg.name}: resuming {spec.method} from {Path(resume).name}")
    trainer.train(resume_from_checkpoint=resume)
    prep.after_training()
    after = measure()
    candidate = save_policy(trainer.model, tokenizer, out / "candidate")
    result.update(heldout={"before": before, "after": after}, steps=trainer.state.global_step,
                  resumed_from_step=counter.resumed_from, steps_this_process=counter.ran,
                  curve=common.curve(trainer.state.log_history, keys))
    del trainer, model, measure, prep
    common.free_memory()  # generation's engine (vLLM on a GPU) gets the card the trainer held

    sft = _once(out / "sft_scores.json", lambda: scores(sft_weights, "sft"))
    aligned = scores(candidate, "aligned")
    decision = keep_aligned(sft["select"]["per_dialogue"], aligned["select"]["per_dialogue"])
    forced = faults.forced_keep()
    if forced is not None:
        decision = Gain(decision.gain, decision.se, forced, f"{decision.why}; forced by {faults.ALIGN_KEEP}")
    result.update(sft=sft, aligned=aligned, kept=decision.keep, gain={"gain": decision.gain, "se": decision.se},
                  reason=(f"aligned beats SFT on dev-select: {decision.why}" if decision.keep else
                          f"aligned does not beat SFT on dev-select ({decision.why}): generation uses the SFT weights"))
    if decision.keep:
        result["weights"] = str(_promote(candidate, out))
    else:
        shutil.rmtree(candidate.parent, ignore_errors=True)
    atomic_write_json(out / "align_result.json", result)
    return result


def keep_aligned(sft_rows: list[float], aligned_rows: list[float]) -> Gain:
    """Aligned weights replace SFT's only when their per-row gain on dev-select exceeds one standard error."""
    return one_se_gain([a - b for a, b in zip(aligned_rows, sft_rows)])


class _Scorer:
    """Greedy dev candidates of some weights, generated as the generate stage will (its backend, quantisation and
    batch; journaled, so a killed stage resumes them), scored on dev-select and dev-report."""

    def __init__(self, cfg: ModelConfig, base_path: str, sel: list[Dialogue], rep: list[Dialogue], store: Path,
                 gen: GenerateSpec, metric: dict):
        self.cfg = cfg.model_copy(update={"decodings": [DecodingSpec(name="greedy")]})
        self.base_path, self.sel, self.rep, self.store, self.gen, self.metric = base_path, sel, rep, store, gen, metric

    def __call__(self, weights: Path, tag: str) -> dict:
        from dialsum.io.candidates import read_part
        from dialsum.models.generation import generate_candidates

        [part] = generate_candidates(self.cfg, self.base_path, weights, {"dev": self.sel + self.rep},
                                     self.store / tag, self.gen, work_dir=self.store / f"{tag}-work")
        preds = {c.fname: c.text for c in read_part(part)}
        return {"select": dev_score(preds, self.sel, self.metric), "report": dev_score(preds, self.rep, self.metric)}


def _promote(candidate: Path, out: Path) -> Path:
    """The kept candidate becomes the stage's weights (`adapter/` or `model/`), by rename."""
    dst = out / candidate.name
    if dst.exists():
        shutil.rmtree(dst)
    candidate.rename(dst)
    shutil.rmtree(candidate.parent, ignore_errors=True)
    return dst


def _fallback(out: Path, result: dict, why: str, scores, sft_weights: Path) -> dict:
    common.free_memory()
    sft = _once(out / "sft_scores.json", lambda: scores(sft_weights, "sft"))
    result.update(sft=sft, kept=False, reason=f"{why}: nothing to train on, generation uses the SFT weights",
                  steps=0, curve=[], aligned=None, heldout=None)
    atomic_write_json(out / "align_result.json", result)
    return result
