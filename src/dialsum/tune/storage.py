"""Where a study lives and how it samples: a journal file by default, any RDB URL (heartbeats retry a killed
worker's trial), seeded samplers (one seed per worker), the configured pruner."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import RunConfig
from dialsum.errors import DialsumError
from dialsum.tune.config import TuneConfig


def study_dir(cfg: RunConfig, study: str) -> Path:
    return Path(cfg.output_dir) / "tune" / study


def make_storage(url: str | None, folder: Path, heartbeat: tuple[int, int] = (30, 90)):
    """A journal file by default; `sqlite:///…`, `postgresql://…`, `mysql://…` as RDB storage with heartbeats every
    heartbeat[0] s (a worker silent for heartbeat[1] s has its trial failed and retried, twice at most); a path
    ending in .log as a journal file."""
    import warnings

    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.endswith(".log"):
        path = Path(url) if url else folder / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise DialsumError(f"--storage {url!r}: not a storage URL (use sqlite:///path.db, postgresql://…, or a "
                           f"journal file path ending in .log)")
    try:
        with warnings.catch_warnings():  # heartbeats and their retry callback are marked experimental in optuna 5
            warnings.simplefilter("ignore")
            from optuna.storages import RetryHeartbeatStaleTrialCallback

            return RDBStorage(url, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1],
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    except Exception as e:  # noqa: BLE001 - any driver/URL error is the user's to fix, in one line
        raise DialsumError(f"--storage {url!r}: cannot open ({str(e).splitlines()[0][:200]})") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(tc: TuneConfig, worker: int = 0, finished: int = 0):
    """Seeded; each worker process gets its own seed (seed + 1000 x worker index), or parallel workers sample alike,
    and a resumed study reseeds by the trials it already holds, or its random and start-up trials repeat."""
    import optuna

    seed = tc.sampler.seed + 1000 * worker + finished
    if tc.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)


def make_pruner(tc: TuneConfig):
    import optuna

    p = tc.pruner
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if p.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def open_study(tc: TuneConfig, storage_url: str | None, folder: Path, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url, folder, (tc.heartbeat.interval, tc.heartbeat.grace))
    try:
        finished = len(optuna.load_study(study_name=tc.study, storage=storage).trials)
    except KeyError:  # a new study
        finished = 0
    study = optuna.create_study(storage=storage, study_name=tc.study, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(tc, worker, finished), pruner=make_pruner(tc))
    study.set_user_attr("space", tc.space)
    return study
