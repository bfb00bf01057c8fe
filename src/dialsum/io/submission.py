"""Write the submission CSV in the leaderboard's exact format, validated, atomically, never overwriting."""
from __future__ import annotations

import os
from pathlib import Path

from dialsum.io.data import load_submission_fnames, read_table
from dialsum.errors import DialsumError
from dialsum.io.files import csv_text


def submission_text(fnames: list[str], summaries: dict[str, str]) -> str:
    """`,fname,summary` with the leading unnamed index column, rows in the sample submission's order."""
    missing = [f for f in fnames if not summaries.get(f, "").strip()]
    if missing:
        raise DialsumError(f"no summary for {len(missing)} fname(s), e.g. {missing[:3]}")
    return csv_text(["", "fname", "summary"], [[i, f, summaries[f]] for i, f in enumerate(fnames)])


def validate_submission(path: Path, sample_fnames: list[str]) -> None:
    """Parse the file back and check fnames/order against the sample submission and that no summary is empty."""
    header, rows = read_table(path)
    if "fname" not in header or "summary" not in header:
        raise DialsumError(f"{path}: needs columns fname and summary")
    got = [r["fname"] for r in rows]
    if got != list(sample_fnames):
        raise DialsumError(f"{path}: fnames differ from sample_submission (order or content)")
    for i, r in enumerate(rows, start=1):
        if not r["summary"].strip():
            raise DialsumError(f"{path}: row {i} ({r['fname']}): empty summary")


def write_submission(directory: Path, run_id: str, sample_submission: Path, summaries: dict[str, str],
                     fnames: list[str] | None = None) -> Path:
    """submissions/<run-id>.csv (or <run-id>-2.csv, ... if taken); the file appears only once it validates. `fnames`:
    the rows to write, in order (default: every row of the sample submission)."""
    fnames = fnames if fnames is not None else load_submission_fnames(sample_submission)
    text = submission_text(fnames, summaries)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{run_id}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        validate_submission(tmp, fnames)
        for k in range(1, 1000):
            dest = directory / (f"{run_id}.csv" if k == 1 else f"{run_id}-{k}.csv")
            try:
                _publish(tmp, dest, text)  # fails if dest exists: no overwrite, no race
                return dest
            except FileExistsError:
                if dest.read_bytes() == tmp.read_bytes():  # the same submission, already written (a resumed run)
                    return dest
                continue
        raise DialsumError(f"{directory}: too many submissions named {run_id}")
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, dest: Path, text: str) -> None:
    """Hard-link the validated temp file into place; where the filesystem has no hard links, create the file
    exclusively (O_EXCL) and write it, removing it again if that write fails."""
    import errno

    try:
        os.link(tmp, dest)
        return
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
