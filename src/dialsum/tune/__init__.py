"""The tuning package, `dialsum tune`: Optuna studies over dialsum's own stages, scored on dev-select only, checked
once on dev-report.

* train space: a trial samples LoRA rank (ranks vLLM serves), learning rate (log-uniform), alpha as a multiple of the
  rank, dropout and epochs for one model, trains it as the ordinary `train:<model>` stage (its own child process,
  keyed: a repeated parameter set is a cache hit), reports the dev-select score at every evaluation (the pruner may
  stop it), then greedy-decodes dev-select and returns the leaderboard score.
* infer space: no training. On a finished run's candidates, a trial samples each source's consensus weight (0 =
  out), the utility and the post-processing rules and length cap; hundreds of trials take seconds to minutes.

The study lives in a storage URL (a journal file by default, any RDB URL), so the same command resumes it by name
and adds trials, W workers are W processes sharing it, and several machines with one RDB URL scale it out. After the
trials, the best parameters are scored once on dev-report next to the untuned config, written as a run config
(`configs/tuned/<study>.yaml`) that `dialsum run --config` takes unchanged, with plots and a Markdown summary.

Modules: `storage` (storage URL, sampler, pruner), `train_space` and `infer_space` (the two objectives),
`reporter` (a trial's reporter, built inside the training child from a named callback in the stage context),
`study` (workers, the held-out check), `outputs` (tuned YAML, plots, summary). Training runs as ordinary
stages (dialsum.stages), never by importing models.
"""
