"""The command line's argument types: every option's value is checked as it is parsed, before any work, and a bad
one is a single line naming the option and the problem (exit 2). Numbers are checked against their range (a count of
0 or a negative cap means nothing), paths against the kind of thing they must be (an existing file, an existing
folder, a file or folder to write). tests/test_cli_inputs.py holds every option of every command to one of these or
to a named list of free-text options. Part of cli; imports nothing from dialsum.
"""
from __future__ import annotations

import argparse
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """Bad input is one line naming the option and the problem (the usage stays behind --help), exit 2."""

    def error(self, message):
        self.exit(2, f"dialsum: error: {message} ({self.prog} --help)\n")


def count(least: int):
    """An integer of at least `least` (0 or a negative number means nothing for a count)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    parse.least = least
    return parse


def between(low: float, high: float):
    """A number from `low` to `high` (a leaderboard score: 0 to 100)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value
    parse.bounds = (low, high)
    return parse


GPU_CARDS = ("rtx3090", "a100-40", "a100-80", "h100", "l4", "t4")  # dialsum.models.time_plan.CARDS (a test checks)
SPLITS = ("train", "dev", "test")


def split_counts(text: str) -> dict[str, int]:
    """`train=12457,dev=499`: rows per split."""
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SPLITS or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: expected SPLIT=N with SPLIT one of {', '.join(SPLITS)} and "
                                             f"N a positive whole number")
        out[name] = int(value)
    return out


def _checked(text: str, folder: bool, must_exist: bool, what: str) -> str:
    """`text` unless it names the other kind of thing (a file for a folder or the reverse), or, when it must exist,
    nothing at all."""
    path = Path(text)
    if path.exists() and path.is_dir() != folder:
        raise argparse.ArgumentTypeError(f"{text}: is a {'file' if folder else 'folder'}, expected {what}")
    if must_exist and not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such {'folder' if folder else 'file'}")
    return text


def existing_file(text: str) -> str:
    return _checked(text, folder=False, must_exist=True, what="a file")


def existing_dir(text: str) -> str:
    return _checked(text, folder=True, must_exist=True, what="a folder")


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def output_file(text: str) -> str:
    """A file to write: not an existing folder (its own folder is created when missing)."""
    return _checked(text, folder=False, must_exist=False, what="a file to write")


def output_dir(text: str) -> str:
    """A folder to write into: not an existing file (created when missing)."""
    return _checked(text, folder=True, must_exist=False, what="a folder to write into")
