"""A run's stages in order, and the questions asked of them: what a stage needs first (its closure), what
`--force`/`--from-stage` recompute (the named stages and everything downstream). The one dependency walk: every
command builds its stages here."""
from __future__ import annotations

from dataclasses import dataclass

from dialsum.config import ModelConfig, RunConfig
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.errors import DialsumError
from dialsum.stages import ORDER, ensemble, final, generate, postprocess, refit, submit, train


@dataclass
class Plan:
    ctx: RunContext
    stages: list[Stage]

    @classmethod
    def models(cls, ctx: RunContext, models: list[ModelConfig], until: str = "generate") -> Plan:
        """Each model's stages up to `until` (train or generate), every stage after what it needs."""
        plan = cls(ctx, [])
        for m in models:
            last = train.plan(ctx, m) if until == "train" else generate.plan(ctx, m)
            plan.add(last)
        return plan

    @classmethod
    def full(cls, ctx: RunContext) -> Plan:
        """Every stage of `dialsum run`: the models' stages, then the ensemble, post-processing and the submission."""
        if set(ctx.cfg.generate.splits) != {"dev", "test"}:
            raise DialsumError(f"generate.splits {ctx.cfg.generate.splits}: `dialsum run` fits the ensemble on dev "
                               f"and submits test, so it needs both; `dialsum generate` honours a single split")
        plan = cls.models(ctx, ctx.cfg.models)
        ens = ensemble.plan(ctx, plan.of_kind("generate"))
        post = postprocess.plan(ctx, ens)
        plan.add(submit.plan(ctx, post))
        if ctx.cfg.final.refit:  # the endgame: every model again on train + dev, the dev-fitted choices applied
            probes = ([plan.add(generate.plan_refit(ctx, m, refit.plan(ctx, m, ens, probe=True)))
                       for m in ctx.cfg.models] if ctx.cfg.final.pseudo_label else [])  # measured first
            gens = [generate.plan_refit(ctx, m, refit.plan(ctx, m, ens)) for m in ctx.cfg.models]
            plan.add(final.plan(ctx, ens, post, gens, probes))
        return plan

    def add(self, stage: Stage) -> Stage:
        """`stage`, after every stage it needs that is not planned yet."""
        for s in self.closure(stage):
            if s not in self.stages:
                self.stages.append(s)
        return stage

    def closure(self, stage: Stage) -> list[Stage]:
        """Every stage `stage` needs, each after its own needs, then `stage` itself."""
        out: list[Stage] = []
        for name in stage.deps:
            out += [s for s in self.closure(self.ctx.stages[name]) if s not in out]
        return out + [stage]

    def of_kind(self, kind: str) -> list[Stage]:
        return [s for s in self.stages if s.kind == kind]

    def recompute(self, force: list[str] = (), from_stage: str | None = None) -> set[str]:
        """Stage names to recompute: those named (a name like `train:tiny` or a kind like `train`), every kind from
        `from_stage` on, and everything downstream of them."""
        forced = set()
        for f in force:
            hit = {s.name for s in self.stages if s.name == f or s.kind == f}
            if not hit:
                raise DialsumError(f"--force {f}: no such stage in this run (stages: "
                                   f"{', '.join(sorted(s.name for s in self.stages))})")
            forced |= hit
        if from_stage:
            forced |= {s.name for s in self.stages if ORDER.index(s.kind) >= ORDER.index(from_stage)}
        for s in self.stages:  # in order, so a stage's upstream is decided before it
            if forced.intersection(s.deps):
                forced.add(s.name)
        return forced


def select_models(cfg: RunConfig, names: list[str] | None) -> list[ModelConfig]:
    """The configured models named (all when none are), or one line naming the unknown ones."""
    if not names:
        return list(cfg.models)
    chosen = [m for m in cfg.models if m.name in names]
    unknown = set(names) - {m.name for m in chosen}
    if unknown:
        raise DialsumError(f"unknown model(s) {sorted(unknown)}; configured: {[m.name for m in cfg.models]}")
    return chosen
