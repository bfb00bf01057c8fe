"""The infer space: on a finished run's candidates, a trial samples each source's consensus weight (0 = out), the
utility and the post-processing rules and length cap; no training, so hundreds of trials take seconds to minutes."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.engine.run_folder import reopen_run
from dialsum.ensemble.consensus import Voting, prepare
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_candidates
from dialsum.postprocess import RULES, FittedPostprocess, LengthCap
from dialsum.scoring.metric import Metric
from dialsum.tune.config import TuneConfig


class InferProblem:
    """A finished run's candidates, prepared once per utility: trials only re-weight and post-process."""

    def __init__(self, run_dir: Path, tc: TuneConfig):
        self.ctx = reopen_run(run_dir, lock=False)  # read-only: workers share it
        man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
        parts = [p for k, v in man.items() if k.startswith("generate:") for p in v["result"]["parts"]]
        if not parts:
            raise DialsumError(f"{run_dir}: no finished generate stages to tune over; run `dialsum run` first")
        self.groups: dict[str, list[tuple[str, str]]] = {}
        for c in read_candidates(parts):
            self.groups.setdefault(c.fname, []).append((c.text, c.source))
        self.sources = list(dict.fromkeys(s for c in self.groups.values() for _, s in c))
        dev = {d.fname: d for d in self.ctx.data.dev}
        self.parts = {p: [dev[f] for f in (self.ctx.split.select if p == "select" else self.ctx.split.report)]
                      for p in ("select", "report")}
        self.tc = tc
        self._prepared: dict[str, dict] = {}

    def dialogues(self, utility: str) -> dict:
        if utility not in self._prepared:
            dev = {d.fname: d for d in self.ctx.data.dev}
            groups = {f: c for f, c in self.groups.items() if f in dev}
            refs = {f: [dev[f].summary] for f in groups}
            self._prepared[utility] = {d.fname: d for d in prepare(groups, self.sources, self.ctx.cfg.metric.semantics,
                                                                   self.ctx.cfg.metric.tokenizer, refs, utility)}
        return self._prepared[utility]

    def predictions(self, weights: dict[str, float], utility: str, fitted_pp, part: str) -> list[str]:
        rule = Voting(tuple(weights.get(s, 0.0) for s in self.sources))
        dl = self.dialogues(utility)
        preds = [dl[d.fname].texts[rule.pick(dl[d.fname])] for d in self.parts[part]]
        return fitted_pp.apply_all(preds) if fitted_pp is not None else preds

    def score(self, weights: dict[str, float], utility: str, fitted_pp, part: str) -> float:
        preds = self.predictions(weights, utility, fitted_pp, part)
        return Metric.of(self.ctx.cfg.metric).final(preds, [[d.summary] for d in self.parts[part]])

    def rows(self, weights: dict[str, float], utility: str, fitted_pp, part: str) -> list[float]:
        """Each dialogue's own score (what a paired comparison resamples)."""
        preds = self.predictions(weights, utility, fitted_pp, part)
        return Metric.of(self.ctx.cfg.metric).rows(preds, [[d.summary] for d in self.parts[part]])


def infer_params(tc: TuneConfig, problem: InferProblem, trial) -> tuple[dict, str, object]:
    weights = {s: trial.suggest_categorical(f"w:{s}", tc.infer.weights) for s in problem.sources}
    if not any(weights.values()):
        weights[problem.sources[0]] = 1.0
    utility = trial.suggest_categorical("utility", tc.infer.utility)
    fitted = None
    if tc.infer.postprocess:
        rules = tuple(r for r in RULES if trial.suggest_categorical(f"rule:{r}", [False, True]))
        cap = trial.suggest_categorical("length_cap", ["none", "s1", "s2", "s3"])
        fitted = FittedPostprocess(rules, None if cap == "none" else LengthCap(max_sentences=int(cap[1:])), (),
                                   problem.ctx.cfg.metric.tokenizer)
    return weights, utility, fitted


def infer_objective(tc: TuneConfig, problem: InferProblem):
    def objective(trial) -> float:
        weights, utility, fitted = infer_params(tc, problem, trial)
        return problem.score(weights, utility, fitted, "select")

    return objective
