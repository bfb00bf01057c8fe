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


def existing_file(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def existing_dir(text: str) -> str:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    return text


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text


def output_file(text: str) -> str:
    """A file to write: not an existing folder (its own folder is created when missing)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file to write")
    return text


def output_dir(text: str) -> str:
    """A folder to write into: not an existing file (created when missing)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, expected a folder to write into")
    return text
