"""Child-process entry point of the stage engine: `python -m dialsum.engine.worker STAGE_DIR`.

Runs the stage described in STAGE_DIR/stage.json and marks it done. A user-facing problem prints one
`dialsum: error:` line (the parent quotes it) and exits 2; anything else is a traceback in the stage's log.
"""
from __future__ import annotations

import sys
from pathlib import Path

from dialsum.engine.core import PRUNED_EXIT, execute
from dialsum.errors import DialsumError


def main(argv: list[str]) -> int:
    try:
        execute(Path(argv[0]))
    except DialsumError as e:
        print(f"dialsum: error: {e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # noqa: BLE001 - a pruned Optuna trial is an expected end, not a failure
        if type(e).__name__ == "TrialPruned":
            print(f"dialsum: pruned: {e}", file=sys.stderr, flush=True)
            return PRUNED_EXIT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
