"""ROUGE-MBR ensemble of the shared peer systems: `dialsum ensemble` (whole command, process start included)
vs a naive in-process loop calling rouge-score per pair; same run, identical picks asserted.
Run: .venv/bin/python bench/bench_ensemble.py [--systems 6 12]
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rouge_score import rouge_scorer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ko" / "peer_test_predictions"


def naive_ensemble(files: list[Path]) -> dict[str, str]:
    import mecab

    m = mecab.MeCab()

    class T:
        def tokenize(self, s):
            return m.morphs(s)

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=T())
    tables = []
    for p in files:
        with open(p, encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        key = "fname" if "fname" in rows[0] else "id"
        tables.append({r[key]: " ".join(r["summary"].split()) for r in rows})
    picks = {}
    for fname in tables[0]:
        texts = [t[fname] for t in tables if fname in t]
        best, best_u = 0, -1.0
        for i, h in enumerate(texts):
            us = []
            for j, r in enumerate(texts):
                if i != j:
                    s = scorer.score(r, h)
                    us.append((s["rouge1"].fmeasure + s["rouge2"].fmeasure + s["rougeL"].fmeasure) / 3)
            u = round(sum(us) / len(us), 12)
            if u > best_u:
                best, best_u = i, u
        picks[fname] = texts[best]
    return picks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", type=int, nargs="+", default=[6, 12])
    args = ap.parse_args()
    files = sorted(p for p in SHARED.glob("*.csv") if p.name != "MANIFEST.csv")
    for k in args.systems:
        chosen = files[:k]
        t0 = time.perf_counter()
        naive = naive_ensemble(chosen)
        t_naive = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "sel.csv"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dialsum", "ensemble", "--candidates", *map(str, chosen),
                            "--out", str(out), "--semantics", "rouge-score"], check=True, capture_output=True)
            t_fast = time.perf_counter() - t0
            with open(out, encoding="utf-8") as f:
                ours = {r["fname"]: r["summary"] for r in csv.DictReader(f)}
        same = sum(ours[f] == naive[f] for f in naive)
        assert same == len(naive), f"{len(naive) - same} picks differ"
        print(f"systems={k:2d} dialogues={len(naive)}: naive rouge-score loop {t_naive:7.2f} s, "
              f"dialsum ensemble (whole command) {t_fast:5.2f} s -> {t_naive / t_fast:5.1f}x; picks identical ({same}/{len(naive)})")


if __name__ == "__main__":
    main()
