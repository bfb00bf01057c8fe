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


PROGRESS = "DIALSUM_PROGRESS"  # "1"/"0": whether progress bars are drawn (a stage child inherits its parent's answer)


def progress_enabled() -> bool:
    """Progress bars only where someone watches: a terminal (a child's stderr is a pipe, so it asks its parent's)."""
    import os

    value = os.environ.get(PROGRESS)
    return value == "1" if value in ("0", "1") else sys.stderr.isatty()


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


def to_file(msg: str, level: int = logging.WARNING) -> None:
    """A message for the run log only (the terminal has already been told, in its own words)."""
    for _, handler in _file:
        handler.handle(LOGGER.makeRecord(LOGGER.name, level, __file__, 0, msg, None, None))


def warnings_to(path: Path | None) -> None:
    """Python warnings (libraries' UserWarnings, deprecations) go to `path` (the run's or the stage's log), each with
    its category and source line, instead of the terminal; without a path, to the run log this process keeps."""
    logging.captureWarnings(True)
    py = logging.getLogger("py.warnings")
    py.propagate = False
    for h in list(py.handlers):
        py.removeHandler(h)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        py.addHandler(handler)
    else:
        py.addHandler(_ToRunLog())


class _ToRunLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        for _, handler in _file:
            handler.handle(record)


def log(msg: str, level: int = logging.INFO) -> None:
    if _console is None:
        console()
    LOGGER.log(level, msg)
