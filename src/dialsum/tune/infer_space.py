"""The infer space: on a finished run's candidates, a trial samples each source's consensus weight (0 = out), the
utility and the post-processing rules and length cap; no training, so hundreds of trials take seconds to minutes."""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.engine.run_folder import reopen_run
from dialsum.ensemble.consensus import Voting, prepare
from dialsum.errors import DialsumError
from dialsum.io.candidates import read_candidates, run_parts
from dialsum.postprocess import RULES, FittedPostprocess, LengthCap
from dialsum.scoring.metric import Metric
from dialsum.tune.config import TuneConfig


class InferProblem:
    """A finished run's candidates, prepared once per utility: trials only re-weight and post-process."""

    def __init__(self, run_dir: Path, tc: TuneConfig):
        self.ctx = reopen_run(run_dir, lock=False)  # read-only: workers share it
        parts = run_parts(run_dir)
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

    def submitted(self, weights: dict[str, float], utility: str, fitted_pp) -> dict[str, str]:
        """What a run of the tuned YAML would submit (dev and test): the weights under the ensemble's guard (k-fold
        on dev-select, one-SE rule), then the tuned rules under the post-processing ablation, as
        dialsum.tune.outputs.write_tuned_yaml writes them and the stages run them."""
        from dialsum.config import EnsembleSpec, PostprocessSpec
        from dialsum.ensemble import ensemble
        from dialsum.postprocess import PostProcessor
        from dialsum.stages.postprocess import FALLBACK_SUMMARY

        metric, sel = self.ctx.cfg.metric, self.parts["select"]
        spec = EnsembleSpec(weights=weights, utility=utility, guard=True)
        res = ensemble(self.groups, metric.semantics, metric.tokenizer, {d.fname: [d.summary] for d in sel},
                       spec.weights, cv_folds=spec.cv_folds, utility=spec.utility, guard=spec.guard)
        picks = {f: p.text for f, p in res.picks.items()}
        pp = (PostprocessSpec(rules=list(fitted_pp.rules), ablate=True, tune_length_cap=True) if fitted_pp is not None
              else self.ctx.cfg.postprocess)
        fixed = LengthCap(pp.max_sentences, pp.max_morphemes) if (pp.max_sentences or pp.max_morphemes) else None
        fit = PostProcessor(tuple(pp.rules), pp.ablate, pp.tune_length_cap, fixed, metric.tokenizer).fit(
            [picks[d.fname] for d in sel], [[d.summary] for d in sel], Metric.of(metric).rows)
        final = {f: fit.apply(t) for f, t in picks.items()}
        return {f: t if t.strip() else FALLBACK_SUMMARY for f, t in final.items()}

    def untuned_final(self) -> dict[str, str]:
        """What the run tuned over really submits (its post-processed final), dev and test."""
        from dialsum.io.candidates import read_split_table

        man = json.loads((self.ctx.run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
        if "postprocess" not in man:
            raise DialsumError(f"{self.ctx.run_dir}: the run has no final yet; run `dialsum run` to its end first")
        table = read_split_table(Path(man["postprocess"]["result"]["final"]))
        return {f: text for split in table.values() for f, (text, _) in split.items()}

    def text_rows(self, texts: dict[str, str], part: str) -> list[float]:
        """Each `part` dialogue's own score for the given texts."""
        rows = self.parts[part]
        return Metric.of(self.ctx.cfg.metric).rows([texts.get(d.fname, "") for d in rows], [[d.summary] for d in rows])

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
