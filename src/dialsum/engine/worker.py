"""Child-process entry point of the stage engine: `python -m dialsum.engine.worker STAGE_DIR [STAGE_DIR ...]`.

Runs the stage described in each STAGE_DIR/stage.json, in order, and marks each done as it finishes (so a kill
between two leaves the first done). A user-facing problem prints one `dialsum: error:` line (the parent quotes it)
and exits 2; anything else is a traceback in the stage's log.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

from dialsum.engine.child import PRUNED_EXIT
from dialsum.engine.core import execute
from dialsum.errors import DialsumError


def release_memory() -> None:
    """Between two stages of one child: what the first held goes back (the GPU's cached blocks too), so the second
    starts from the memory a fresh child would."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def main(argv: list[str]) -> int:
    try:
        for i, folder in enumerate(argv):
            if i:
                release_memory()
            execute(Path(folder))
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
