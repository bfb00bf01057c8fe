"""dialsum's messages: `[dialsum] ...` on stderr (--quiet: warnings only; --verbose: debug too) and every message,
timestamped, in the run folder's logs/run.log."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER = logging.getLogger("dialsum")


class _Stderr(logging.StreamHandler):
    """stderr as it is when a message is written (not when the handler was made), as `[dialsum] message`."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_console: logging.Handler | None = None
_file: list = []  # [(path, handler)] of the run folder this process works in now


def console(level: int = logging.INFO) -> None:
    """Show dialsum's messages on stderr from `level` on (WARNING for --quiet, DEBUG for --verbose)."""
    global _console
    if _console is None:
        _console = _Stderr()
        _console.setFormatter(logging.Formatter("[dialsum] %(message)s"))
        LOGGER.addHandler(_console)
        LOGGER.setLevel(logging.DEBUG)
        LOGGER.propagate = False
    _console.setLevel(level)


def quiet() -> bool:
    """--quiet: stage children's output goes to their log files only, not to the terminal."""
    return _console is not None and _console.level > logging.INFO


def log_to_file(path: Path) -> None:
    """Also keep every message, DEBUG included and timestamped, in `path` (the run's logs/run.log): one file at a
    time, the run folder opened last (a tuning study opens one per trial)."""
    key = str(Path(path).resolve())
    if _file and _file[0][0] == key:
        return
    for _, old in _file:
        LOGGER.removeHandler(old)
        old.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    _file[:] = [(key, handler)]


def log(msg: str, level: int = logging.INFO) -> None:
    if _console is None:
        console()
    LOGGER.log(level, msg)
