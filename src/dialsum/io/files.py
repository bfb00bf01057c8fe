"""Small I/O helpers: atomic writes (temp file + rename) so a kill never leaves a half-written output."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a kill leaves no half-written temp file behind
        raise


def csv_text(header: list[str], rows: list[list]) -> str:
    """CSV text with "\n" line ends. Python's writer quotes a field holding "\n" but not one holding a lone "\r",
    which every reader takes for a line end (a dialogue from a Windows-edited CSV, a model's output): such a row
    is written fully quoted, so it reads back as written; every other row is as plain as before."""
    buf = io.StringIO()
    plain = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(header)
    for row in rows:
        (quoted if any(isinstance(v, str) and "\r" in v for v in row) else plain).writerow(row)
    return buf.getvalue()


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
