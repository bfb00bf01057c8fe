"""The stage engine: every stage a function of declared inputs, its output keyed by a hash of exactly those.

`core` (Stage, Engine, stage locks, the child process a model stage runs in), `worker` (that child's entry point),
`kinds` (stage kinds and versions), `runs` (run folders: data checked, dev split, snapshot, provenance, one writer),
`graph` (stage construction: which stages a config needs and their keys, in one place), `tasks` (the stage functions
themselves), `pipeline` (running a plan and writing its report), `explorer` (the HTML report's data, from a run folder
alone) and `tracking` (TensorBoard/MLflow/W&B, logged from stage results). May import core modules, io, scoring, selection
and models (model stages run in a child process, so the parent never imports torch); never tune, commands or cli.
"""
