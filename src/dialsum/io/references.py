"""Reference files: a CSV of fname and one reference (`summary`) or several (`summary1..summaryK`), as the
competition's dev file and its multi-reference test answers come."""
from __future__ import annotations

from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.data import read_table


def read_references(path: Path) -> dict[str, list[str]]:
    """fname -> references (whitespace-normalised, empty cells dropped); a row without any, or a repeated fname,
    is an error."""
    header, rows = read_table(path)
    cols = sorted((h for h in header if h.startswith("summary") and h[7:].isdigit()), key=lambda h: int(h[7:]))
    cols = cols or (["summary"] if "summary" in header else [])
    if "fname" not in header or not cols:
        raise DialsumError(f"{path}: needs fname and summary (or summary1..summaryK) columns")
    out = {}
    for i, r in enumerate(rows, start=1):
        refs = [" ".join(r[c].split()) for c in cols if r[c].strip()]
        if not refs:
            raise DialsumError(f"{path}: row {i} ({r['fname']}): no reference summary")
        fname = r["fname"].strip()
        if fname in out:  # scoring one of two rows silently would score against a reference chosen by accident
            raise DialsumError(f"{path}: row {i}: duplicate fname {fname!r} (put several references of one dialogue "
                               f"in summary1..summaryK columns of one row)")
        out[fname] = refs
    return out
