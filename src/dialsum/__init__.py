"""dialsum: fine-tune LLMs and seq2seq models for Korean dialogue summarisation, choose among their candidates by
ROUGE consensus, and submit.

Packages by job, imports one way (checked by tests/test_layout.py):

    cli            parses arguments, dispatches to commands by name
    commands       one module per command group: reads arguments, calls the parts below, prints
    tune           Optuna studies over engine stages
    engine         keyed stages, run folders, locks, child processes, stage construction and stage functions
    align          Phase 3 after SFT: DPO / GRPO / BRIO ranking rewarded by the leaderboard metric (TRL)
    models         loading, prompts, training, generation backends, tiny stand-ins       (torch lives here)
    selection      consensus (MBR) fitting and post-processing: pure functions
    scoring        morpheme tokenizers and their cache, the leaderboard metric: pure functions
    io             competition data, candidate store, references, submission, report files
    core modules   errors, config, hardware (the GPU probe), faults (test hooks), user_cache (the per-user cache
                   folder): import no package above

Allowed imports (besides core, which every package may use): commands -> tune, engine, models, selection,
scoring, io; tune -> engine, selection, scoring, io; engine -> align, models, selection, scoring, io;
align -> models, scoring, io; models -> scoring, io;
selection -> scoring; scoring, io -> nothing else; cli -> commands (by name) and engine.kinds; nothing imports cli.
"""

import os

__version__ = "0.1.0"

# OpenMP (torch on CPU) threads spin ~300,000 iterations before sleeping; several dialsum processes at once (tune
# workers, `run --only-model` shells, --parallel-models, a parallel test suite) then burn each other's cores: two tiny
# model builds at once took 202 s instead of 37 s on 2 cores. 1,000 spins costs one process nothing measurable. Set
# here, before anything imports torch; every stage child inherits it. A value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
