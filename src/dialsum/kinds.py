"""The stage kinds, in pipeline order: a module of its own so the command line can list them without importing the
engine (every `dialsum` command pays for what cli.py imports)."""

KINDS = ("build", "train", "generate", "ensemble", "postprocess", "submit", "report")  # in pipeline order
STAGE_KINDS = KINDS[1:]  # what `run --from-stage` accepts
