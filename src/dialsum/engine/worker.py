"""Child-process entry point of the stage engine: `python -m dialsum.engine.worker STAGE_DIR [STAGE_DIR ...]`.

Runs the stage described in each STAGE_DIR/stage.json, in order, and marks each done as it finishes (so a kill
between two leaves the first done). A user-facing problem prints one `dialsum: error:` line (the parent quotes it)
and exits 2; anything else is a traceback in the stage's log.
"""
from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path

from dialsum.engine.child import INTERRUPTED_EXIT, PRUNED_EXIT
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
    from dialsum.engine.child import WARNINGS_LOG
    from dialsum.logs import progress_enabled, warnings_to

    if os.environ.get(WARNINGS_LOG):
        warnings_to(Path(os.environ[WARNINGS_LOG]))

    if not progress_enabled():  # a log file or a pipe: no bars (transformers' loading and saving bars included)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    try:
        for i, folder in enumerate(argv):
            if i:
                release_memory()
            execute(Path(folder))
    except DialsumError as e:
        print(f"dialsum: error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:  # Ctrl-C (or the parent passing on its SIGTERM): the parent says it, once
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return INTERRUPTED_EXIT
    except Exception as e:  # noqa: BLE001 - a pruned Optuna trial is an expected end, not a failure
        if type(e).__name__ == "TrialPruned":
            print(f"dialsum: pruned: {e}", file=sys.stderr, flush=True)
            return PRUNED_EXIT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
