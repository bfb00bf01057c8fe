"""dialsum: fine-tune LLMs and seq2seq models for Korean dialogue summarisation, choose among their candidates by
ROUGE consensus, and submit. The packages and the one-way import rules between them: docs/architecture.md (rendered
from the rules tests/test_layout.py checks)."""

import os

__version__ = "0.1.0"

# OpenMP (torch on CPU) threads spin ~300,000 iterations before sleeping; several dialsum processes at once (tune
# workers, `run --only-model` shells, --parallel-models, a parallel test suite) then burn each other's cores
# (docs/BENCHMARKS.md); 1,000 spins costs one process nothing measurable. Set
# here, before anything imports torch; every stage child inherits it. A value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
