"""Load and validate the competition CSVs at the boundary, so every later stage can trust its input.

A problem gives a `DialsumError` naming the file, the row and what is wrong. Harmless quirks are accepted:
a UTF-8 BOM, CRLF line endings, extra or reordered columns, literal backslash-n between turns.
"""
from __future__ import annotations

import logging
import csv
import io
from dataclasses import dataclass
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.logs import log

SPLIT_FILES = {"train": "train.csv", "dev": "dev.csv", "test": "test.csv"}


@dataclass(frozen=True)
class Dialogue:
    fname: str
    dialogue: str
    summary: str | None = None
    topic: str | None = None


@dataclass(frozen=True)
class CompetitionData:
    train: list[Dialogue]
    dev: list[Dialogue]
    test: list[Dialogue]
    submission_fnames: list[str]
    directory: Path

    def split(self, name: str) -> list[Dialogue]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[name]


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV as (header, rows) with clear errors for unreadable, empty or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise DialsumError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DialsumError(f"{path}: file is empty")
    if b"\x00" in raw:
        raise DialsumError(f"{path}: not a CSV text file (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DialsumError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 (Excel: CSV UTF-8)") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise DialsumError(f"{path}: malformed CSV near line {reader.line_num}: {e}") from None
    header = [h.strip() for h in rows[0]]
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise DialsumError(f"{path}: duplicate column name(s) {', '.join(dupes)} in the header")
    body = []
    for i, values in enumerate(rows[1:], start=1):
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            raise DialsumError(f"{path}: row {i}: {len(values)} fields but the header has {len(header)}")
        body.append(dict(zip(header, values + [""] * (len(header) - len(values)))))
    return header, body


def require_columns(path: Path, header: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise DialsumError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(h for h in header if h) or 'none'})")


def normalise_dialogue(text: str) -> str:
    """Unify line endings and literal backslash-n turn separators into real newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\\n", "\n")
    return "\n".join(line.strip() for line in text.strip().split("\n") if line.strip())


def unique_key(path: Path, row: int, value: str, seen: dict[str, int], column: str = "fname") -> str:
    """A row's key, stripped: refused (file, row) when empty or already seen; `seen` maps key -> first row."""
    key = value.strip()
    if not key:
        raise DialsumError(f"{path}: row {row}: empty {column}")
    if key in seen:
        raise DialsumError(f"{path}: row {row}: duplicate {column} {key!r} (first at row {seen[key]})")
    seen[key] = row
    return key


def load_dialogues(path: Path, with_summary: bool) -> list[Dialogue]:
    """Load train/dev (with summary) or test (without) dialogues; reject duplicates and empty fields."""
    path = Path(path)
    header, rows = read_table(path)
    columns = ["fname", "dialogue"] + (["summary"] if with_summary else [])
    require_columns(path, header, columns)
    seen: dict[str, int] = {}
    out = []
    for i, row in enumerate(rows, start=1):
        fname = unique_key(path, i, row["fname"], seen)
        dialogue = normalise_dialogue(row["dialogue"])
        if not dialogue:
            raise DialsumError(f"{path}: row {i} ({fname}): empty dialogue")
        summary = None
        if with_summary:
            summary = " ".join(row["summary"].split())
            if not summary:
                raise DialsumError(f"{path}: row {i} ({fname}): empty summary")
        out.append(Dialogue(fname, dialogue, summary, (row.get("topic") or "").strip() or None))
    if not out:
        raise DialsumError(f"{path}: no data rows")
    return out


def load_submission_fnames(path: Path) -> list[str]:
    """The fnames, in order, of the organisers' sample submission (leading unnamed index column allowed)."""
    path = Path(path)
    header, rows = read_table(path)
    require_columns(path, header, ["fname"])
    seen: dict[str, int] = {}
    return [unique_key(path, i, row["fname"], seen) for i, row in enumerate(rows, start=1)]


def load_competition(directory: Path, warn: bool = False, limit: int | None = None, seed: int = 0) -> CompetitionData:
    """Load and cross-check train/dev/test/sample_submission from one folder; `warn`: say what looks like a leak
    between splits (a run says it once, when it opens); `limit`: smoke mode (`limited`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DialsumError(f"{directory}: data folder not found")
    train = load_dialogues(directory / "train.csv", with_summary=True)
    dev = load_dialogues(directory / "dev.csv", with_summary=True)
    test = load_dialogues(directory / "test.csv", with_summary=False)
    sub_path = directory / "sample_submission.csv"
    fnames = load_submission_fnames(sub_path)
    test_names = [d.fname for d in test]
    if set(fnames) != set(test_names):
        only_sub = sorted(set(fnames) - set(test_names))[:3]
        only_test = sorted(set(test_names) - set(fnames))[:3]
        raise DialsumError(
            f"{sub_path}: fnames differ from test.csv (only in sample_submission: {only_sub or '-'}; only in test: {only_test or '-'})")
    if warn:
        warn_overlaps(directory, {"train": train, "dev": dev, "test": test})
    data = CompetitionData(train, dev, test, fnames, directory)
    return limited(data, limit, seed) if limit else data


def limited(data: CompetitionData, n: int, seed: int) -> CompetitionData:
    """Smoke mode: at most `n` rows of each split, a seeded sample stratified by topic (topics taken in turn, each
    topic's rows in a seeded order), kept in file order; the sample submission keeps the chosen test rows."""
    import random

    def pick(rows: list[Dialogue], salt: str) -> list[Dialogue]:
        if n >= len(rows):
            return rows
        rng = random.Random(f"{seed}:{salt}")
        groups: dict[str, list[Dialogue]] = {}
        for d in rows:
            groups.setdefault(d.topic or "", []).append(d)
        order = sorted(groups)
        rng.shuffle(order)
        for topic in order:
            rng.shuffle(groups[topic])
        chosen: set[str] = set()
        while len(chosen) < n:
            for topic in order:
                if groups[topic] and len(chosen) < n:
                    chosen.add(groups[topic].pop().fname)
        return [d for d in rows if d.fname in chosen]

    test = pick(data.test, "test")
    keep = {d.fname for d in test}
    return CompetitionData(pick(data.train, "train"), pick(data.dev, "dev"), test,
                           [f for f in data.submission_fnames if f in keep], data.directory)


def warn_overlaps(directory: Path, splits: dict[str, list[Dialogue]]) -> None:
    """Report (one line each) fnames or dialogues that appear in two splits: a leak that inflates dev scores."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            same_f = {d.fname for d in splits[a]} & {d.fname for d in splits[b]}
            same_d = {d.dialogue for d in splits[a]} & {d.dialogue for d in splits[b]}
            if same_f:
                log(f"warning: {directory}: {len(same_f)} fname(s) in both {a}.csv and {b}.csv, e.g. "
                    f"{sorted(same_f)[:3]}", logging.WARNING)
            if same_d:
                ex = next(d.fname for d in splits[b] if d.dialogue in same_d)
                log(f"warning: {directory}: {len(same_d)} identical dialogue(s) in both {a}.csv and {b}.csv, e.g. "
                    f"{b}.csv {ex}", logging.WARNING)
