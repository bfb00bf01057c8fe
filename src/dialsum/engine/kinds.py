"""The stage kinds and their versions: a module of its own so the command line can list them without importing the
engine (every `dialsum` command pays for what cli.py imports)."""

KINDS = ("build", "train", "prefs", "align", "generate", "ensemble", "postprocess", "submit", "report")  # in pipeline order
STAGE_KINDS = KINDS[1:]  # what `run --from-stage` accepts

# Bump a stage's version when its code changes what it writes (joblib's lesson: never hash function source).
# `prefs` (a model's own ranked samples) and `align` (preference optimisation after SFT) run only for models whose
# `align.method` is not none. `devscore` is the tuning study's stage (a trained model's greedy dev score), not part of a run's plan.
VERSIONS = {"build": 1, "train": 5, "prefs": 1, "align": 2, "generate": 5, "ensemble": 6, "postprocess": 3, "submit": 1,
            "report": 2,
            "devscore": 2}
