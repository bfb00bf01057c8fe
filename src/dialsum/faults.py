"""Fault injection for tests, in one place: environment variables a test sets to make a stage die the way real
runs die, so that resuming can be tested through the real command line.

    DIALSUM_KILL_AFTER_STEPS=N   a training child sends itself SIGKILL (as the OOM killer would) at the first
                                 checkpoint save at or after optimizer step N; its checkpoints stay on disk.
                                 `KIND:N` (e.g. `align:4`) aims at the stages of that kind instead of `train`.

    DIALSUM_ALIGN_KEEP=always|never
                                 an align stage keeps (or drops) its aligned weights whatever dev-select says, so a
                                 test can show generation following either decision; the result says it was forced.

    DIALSUM_PROBE_IMPORTS=PATH  the run's parent process writes {"torch": imported?} to PATH when it ends, so a test
                                 can show it never loaded a model (model stages run in children).

`StopAfter(n)` does the in-process equivalent for tests that call `train_model` directly (raises
KeyboardInterrupt after the checkpoint of step n). Production code only calls `from_env()`, which returns no
callback unless a variable above is set. Imports nothing from dialsum; transformers only when a hook is built.
"""
from __future__ import annotations

import os
import signal

KILL_AFTER_STEPS = "DIALSUM_KILL_AFTER_STEPS"
ALIGN_KEEP = "DIALSUM_ALIGN_KEEP"
PROBE_IMPORTS = "DIALSUM_PROBE_IMPORTS"


def probe_imports() -> None:
    """With DIALSUM_PROBE_IMPORTS set: write whether this process imported torch to that file."""
    import json
    import sys

    path = os.environ.get(PROBE_IMPORTS)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"torch": "torch" in sys.modules}, f)


def _callback(step: int, action):
    from transformers import TrainerCallback

    class _At(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step >= step:
                action(state.global_step)

    return _At()


def _sigkill(step: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _interrupt(step: int) -> None:
    raise KeyboardInterrupt(f"stopped after {step} steps")


def from_env(kind: str = "train") -> list:
    """TrainerCallbacks the environment asks a stage of this kind for (none in a normal run)."""
    target, _, n = (os.environ.get(KILL_AFTER_STEPS, "") or "0").rpartition(":")
    if (target or "train") != kind:
        return []
    return [_callback(int(n), _sigkill)] if int(n or 0) > 0 else []


def StopAfter(steps: int):  # noqa: N802 - reads as the callback it builds
    """A TrainerCallback that ends training with KeyboardInterrupt after the checkpoint save at step `steps`."""
    return _callback(steps, _interrupt)


def forced_keep() -> bool | None:
    """True/False when the environment forces an align stage's keep decision (tests), else None."""
    value = os.environ.get(ALIGN_KEEP, "")
    if value not in ("", "always", "never"):
        raise ValueError(f"{ALIGN_KEEP}={value!r}: always or never")
    return None if not value else value == "always"
