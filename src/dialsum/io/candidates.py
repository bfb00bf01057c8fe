"""The candidate store: every generated summary with its provenance, one CSV per (model, decoding) part.

A part is written atomically when complete; while it is being generated, finished chunks go to a `.partial.jsonl`
journal, so a killed run resumes where it stopped and never duplicates a row.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.data import read_table, require_columns, unique_key
from dialsum.io.files import atomic_write_text, csv_text


@dataclass(frozen=True)
class Candidate:
    fname: str
    split: str
    text: str
    model: str = ""
    adapter: str = ""
    decoding: str = ""
    sample_idx: int = 0
    seed: int = 0
    logprob: float | None = None

    @property
    def source(self) -> str:
        return f"{self.model}/{self.decoding}" if self.decoding else self.model


COLUMNS = [f.name for f in fields(Candidate)]


def part_path(store: Path, model: str, decoding: str) -> Path:
    return Path(store) / f"{model}__{decoding}.csv"


def write_part(path: Path, cands: list[Candidate]) -> None:
    rows = [[getattr(c, k) if getattr(c, k) is not None else "" for k in COLUMNS] for c in cands]
    atomic_write_text(path, csv_text(COLUMNS, rows))


def read_part(path: Path) -> list[Candidate]:
    header, rows = read_table(path)
    require_columns(path, header, COLUMNS)
    out = []
    for i, r in enumerate(rows, start=1):
        lp = r["logprob"]
        if not r["fname"].strip() or r["split"] not in ("dev", "test", "train"):
            raise DialsumError(f"{path}: row {i}: needs a fname and a split of dev/test (got {r['split']!r})")
        try:
            out.append(Candidate(r["fname"], r["split"], r["text"], r["model"], r["adapter"], r["decoding"],
                                 int(r["sample_idx"] or 0), int(r["seed"] or 0), float(lp) if lp else None))
        except ValueError:
            raise DialsumError(f"{path}: row {i}: sample_idx, seed and logprob must be numbers "
                               f"(got {r['sample_idx']!r}, {r['seed']!r}, {lp!r})") from None
    return out


def read_candidates(parts: list[str]) -> list[Candidate]:
    """Every candidate of the given part files, in order."""
    return [c for p in parts for c in read_part(Path(p))]


def read_split_table(path: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """A stage's picks.csv / final.csv as split -> fname -> (summary, source)."""
    _, rows = read_table(path)
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["split"], {})[r["fname"]] = (r["summary"], r.get("source", ""))
    return out


def read_store(store: Path, split: str | None = None) -> list[Candidate]:
    parts = sorted(Path(store).glob("*__*.csv"))
    if not parts:
        raise DialsumError(f"{store}: no candidate parts (*.csv) found")
    cands = [c for p in parts for c in read_part(p)]
    return [c for c in cands if split is None or c.split == split]


class Journal:
    """Append-only record of finished chunks of a part, one JSON line per chunk.

    A chunk is done only when its whole line is there: a kill mid-write leaves a torn last line, which is dropped,
    so a resumed run regenerates that chunk whole (with the same seeds) and equals an uninterrupted run.
    """

    def __init__(self, path: Path):
        self.path = Path(path).with_suffix(".partial.jsonl")

    def load(self) -> dict[int, list[Candidate]]:
        """chunk index -> its candidates, for every complete chunk."""
        if not self.path.exists():
            return {}
        chunks: dict[int, list[Candidate]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                cands = [Candidate(**c) for c in rec["candidates"]]
                if len(cands) != rec["count"]:
                    continue
                chunks[int(rec["chunk"])] = cands
            except (json.JSONDecodeError, TypeError, KeyError, ValueError):
                continue  # a torn line from a kill, or a foreign one: that chunk is redone
        return chunks

    def append(self, chunk: int, cands: list[Candidate]) -> None:
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
        line = json.dumps({"chunk": chunk, "count": len(cands), "candidates": [asdict(c) for c in cands]},
                          ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(("\n" if torn else "") + line + "\n")  # a kill mid-line: end that line so this one starts clean
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_predictions(path: Path) -> dict[str, str]:
    """A submission-style CSV (`fname` or `id`, `summary`) as fname -> summary, texts verbatim; NaN becomes ''."""
    path = Path(path)
    header, rows = read_table(path)
    key = "fname" if "fname" in header else ("id" if "id" in header else None)
    if key is None:
        raise DialsumError(f"{path}: missing column fname (or id)")
    require_columns(path, header, ["summary"])
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for i, r in enumerate(rows, start=1):
        f = unique_key(path, i, r[key], seen, key)
        s = r["summary"]
        out[f] = "" if s.strip().lower() == "nan" else s  # verbatim: whitespace is post-processing's call
    return out


def is_nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def run_parts(run_dir: Path) -> list[str]:
    """A run folder's candidate parts (dev and test), as its manifest's generate stages resolved them; one line when
    there are none or a part is missing."""
    import json

    man = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8")).get("stages", {})
    parts = [p for name, rec in man.items() if name.startswith("generate:") for p in rec["result"]["parts"]]
    if not parts or not all(Path(p).is_file() for p in parts):
        raise DialsumError(f"{run_dir}: no finished candidates (run `dialsum run` or `dialsum generate` first)")
    return parts
