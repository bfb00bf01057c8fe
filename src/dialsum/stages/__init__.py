"""The stage graph: one module per stage kind, each with the same shape (torchtune's recipe idea, applied to a stage).

    KIND, VERSION, CHILD      its cache folder, its version (bump when its code changes what it writes; joblib's
                              lesson: never hash function source), whether it loads a model (then it runs in a child)
    plan(ctx, ...) -> Stage   its inputs (exactly what its output is keyed by), context (where things are) and deps
    run(inputs, context, out) -> dict   what it computes, written under `out`; a small JSON-able result

`plan.Plan` orders a run's stages and answers what a stage needs and what `--force`/`--from-stage` recompute;
`pipeline.run_pipeline` is the recipe (open run -> plan -> run stages -> report -> track). To add a stage: add its
module here and its name to ORDER. This file imports nothing, so the command line can list the kinds for free.
"""

# pipeline order; refit and final only with `final.refit` (the endgame, after the run's own submission)
ORDER = ("build", "train", "prefs", "align", "generate", "ensemble", "postprocess", "submit", "refit", "final")
RERUNNABLE = ORDER[1:]  # what `run --from-stage` accepts (a tiny model's build is keyed by its spec alone)
TUNING = ("devscore",)  # a tuning trial's stage (a trained model's greedy dev score), never part of a run's plan


def stage_module(kind: str):
    """The module of a stage kind (imported on demand: a stage's module may import heavy parts lazily only)."""
    import importlib

    if kind not in ORDER + TUNING:
        raise KeyError(kind)
    return importlib.import_module(f"dialsum.stages.{kind}")
