"""One exception type for every user-facing problem, so the CLI can print one line and exit 2."""


class DialsumError(Exception):
    """A problem the user can fix (bad input file, bad config, impossible request); never a bug."""
