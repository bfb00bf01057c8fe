"""dialsum: fine-tune LLMs and seq2seq models for Korean dialogue summarisation, choose among their candidates by
ROUGE consensus, and submit.

Packages by job, imports one way (checked by tests/test_layout.py):

    cli            parses arguments, dispatches to commands by name
    commands       one module per command group: reads arguments, calls the parts below, prints
    tune           Optuna studies over engine stages
    engine         keyed stages, run folders, locks, child processes, stage construction and stage functions
    models         loading, prompts, training, generation backends, tiny stand-ins       (torch lives here)
    selection      consensus (MBR) fitting and post-processing: pure functions
    scoring        morpheme tokenizers and their cache, the leaderboard metric: pure functions
    io             competition data, candidate store, references, submission, report files
    core modules   errors, config, hardware (the GPU probe), faults (test hooks): import no package above

A package imports only from packages listed below it (models may import io and scoring; selection only scoring;
scoring and io only core modules), with two exceptions: engine builds stages whose functions live in models but
never sees tune, commands or cli; and nothing imports cli.
"""

__version__ = "0.1.0"
