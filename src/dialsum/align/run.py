"""One model's alignment, end to end inside the align stage's child: train with the configured method, measure the
method's own objective on held-out train dialogues before and after, then score the SFT and the aligned weights on
dev the way generation will use them (generation's backend and quantisation, greedy decoding), and keep the aligned
weights only when their per-row gain on dev-select exceeds one standard error (dialsum's rule for every choice).

Writes into `out`: `adapter/` or `model/` (only when kept), `align_result.json` (scores, decision, held-out
objective, training curve), `rewards.csv` (grpo: every completion's reward), `checkpoints/` (resume after a kill),
`scoring/` (the greedy dev candidates of both, journaled like any generation).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from dialsum import faults
from dialsum.align import common
from dialsum.align.preferences import Ranked, dpo_pairs, ranking_groups, split_heldout
from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig
from dialsum.io.data import Dialogue
from dialsum.io.files import atomic_write_json
from dialsum.models.training import step_counter
from dialsum.scoring.bootstrap import Gain, one_se_gain
from dialsum.scoring.metric import score_corpus


def dev_score(preds: dict[str, str], rows: list[Dialogue], metric: dict) -> dict:
    s = score_corpus([preds[d.fname] for d in rows], [[d.summary] for d in rows], metric["semantics"],
                     metric["tokenizer"])
    return {**s.as_dict(), "n": len(rows), "per_dialogue": s.finals()}


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
    fit, held = set(fit_names), set(held_names)
    ckpt = out / "checkpoints"
    counter = step_counter()
    cbs = [counter, *(callbacks or [])]
    result: dict = {"method": spec.method, "rows": len(rows), "heldout_rows": len(held)}
    scores = _Scorer(cfg, base_path, sel, rep, out / "scoring", gen, metric)

    if spec.method == "dpo":
        from dialsum.align import dpo

        pairs = dpo_pairs(prefs or [], spec.min_margin, spec.pairs_per_row)
        train_pairs, held_pairs = [p for p in pairs if p[0] in fit], [p for p in pairs if p[0] in held]
        result.update(pairs=len(train_pairs), heldout_pairs=len(held_pairs))
        if not train_pairs:
            del model  # generation's engine scores SFT next: the policy must not hold the card meanwhile
            return _fallback(out, result, f"no preference pairs with a metric gap >= {spec.min_margin}", scores,
                             sft_weights)
        train_ds = dpo.pair_dataset(tokenizer, cfg, by_fname, train_pairs, stops)
        held_ds = dpo.pair_dataset(tokenizer, cfg, by_fname, held_pairs, stops) if held_pairs else None
        trainer = dpo.make_trainer(model, tokenizer, cfg, spec, train_ds, held_ds, ckpt, cbs)
        measure = (lambda: dpo.heldout_margin(trainer, held_ds)) if held_ds is not None else (lambda: {})
        keys = dpo.CURVE
    elif spec.method == "grpo":
        from dialsum.align import grpo
        from dialsum.align.policy import greedy_preds
        from dialsum.align.reward import MetricReward

        reward = MetricReward(tokenizer, metric, spec.length_weight)
        reward.resume(out / "rewards.csv", common.last_checkpoint(ckpt))
        cbs.append(reward.saver(out / "rewards.csv"))
        held_rows = [by_fname[f] for f in held_names]
        trainer = grpo.make_trainer(model, tokenizer, cfg, spec, [by_fname[f] for f in fit_names], reward, stops,
                                    ckpt, cbs)

        def measure() -> dict:  # the reward of the greedy summary on held-out train dialogues
            return {"greedy_reward": dev_score(greedy_preds(trainer.model, tokenizer, cfg, held_rows, stops),
                                               held_rows, metric)["final"]}
        keys = grpo.CURVE
    elif spec.method == "rank":
        from dialsum.align import rank

        groups = ranking_groups(prefs or [], spec.min_margin)
        train_g = {f: g for f, g in groups.items() if f in fit}
        held_g = {f: g for f, g in groups.items() if f in held}
        result.update(groups=len(train_g), heldout_groups=len(held_g))
        if not train_g:
            del model  # generation's engine scores SFT next: the policy must not hold the card meanwhile
            return _fallback(out, result, f"no dialogue whose samples differ by >= {spec.min_margin}", scores,
                             sft_weights)
        examples = rank.group_examples(tokenizer, cfg, by_fname, train_g, stops)
        held_ex = rank.group_examples(tokenizer, cfg, by_fname, held_g, stops)
        trainer = rank.make_trainer(model, tokenizer, cfg, spec, examples, ckpt, cbs)
        seq2seq = cfg.family == "seq2seq"
        measure = (lambda: rank.heldout_ranking(trainer, held_ex, spec, seq2seq)) if held_ex else (lambda: {})
        keys = rank.CURVE
    else:
        raise ValueError(f"align.method {spec.method!r} has no trainer")

    before = _once(out / "heldout_before.json", measure)
    trainer.train(resume_from_checkpoint=common.last_checkpoint(ckpt))
    if spec.method == "grpo":
        reward.write(out / "rewards.csv")
    after = measure()
    candidate = save_policy(trainer.model, tokenizer, out / "candidate")
    result.update(heldout={"before": before, "after": after}, steps=trainer.state.global_step,
                  resumed_from_step=counter.resumed_from, steps_this_process=counter.ran,
                  curve=common.curve(trainer.state.log_history, keys))
    del trainer, model, measure
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
