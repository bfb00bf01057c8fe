"""The generic stage machinery: a stage is a function of declared inputs, its output keyed by a hash of exactly those.

`core` (Stage, Engine, stage locks), `child`/`forked`/`worker` (the child process a model stage runs in),
`run_folder` (a run's folder: data checked, dev split, snapshot, provenance, one writer). Which stages exist and what
they compute is dialsum.stages; nothing here knows a stage kind.
"""
