"""submissions/log.csv: one row per leaderboard upload (what was sent, what dev-report promised, what the
leaderboard answered), append-only and written atomically, so a kill mid-write leaves the old log or the new one."""
from __future__ import annotations

from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.data import read_table
from dialsum.io.files import atomic_write_text, csv_text

COLUMNS = ["time", "file", "sha256", "run_id", "config", "dev_report", "ci_low", "ci_high", "public", "private", "note"]


def read_log(path: Path) -> list[dict[str, str]]:
    """The log's rows in the order they were added (none when there is no log yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    header, rows = read_table(path)
    if header != COLUMNS:
        raise DialsumError(f"{path}: not a dialsum submission log (columns {header}, expected {COLUMNS})")
    return rows


def append_entry(path: Path, entry: dict) -> None:
    """The log with `entry` added: the whole file rewritten to a temporary file and renamed over the old one."""
    rows = read_log(path) + [{k: "" if entry.get(k) is None else str(entry[k]) for k in COLUMNS}]
    atomic_write_text(Path(path), csv_text(COLUMNS, [[r[k] for k in COLUMNS] for r in rows]))
