"""What the HTML report shows, gathered from a finished run folder alone (so `dialsum report RUN_DIR` can rebuild it):
every dev dialogue with its reference, every candidate with its source, its score against the reference and its
consensus utility, the ensemble's pick and the best candidate; plus the run's stage table, comparisons and fit.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.candidates import read_split_table
from dialsum.io.data import load_dialogues
from dialsum.io.references import read_references
from dialsum.scoring.metric import score_corpus


def _stage(man: dict, name: str, run_dir: Path) -> dict:
    rec = man.get("stages", {}).get(name)
    if not rec or "result" not in rec:
        raise DialsumError(f"{run_dir}: stage {name} has not finished in this run (run `dialsum run` first)")
    return rec


def explorer_data(run_dir: Path) -> dict:
    """The report's data as one JSON-able dict (see report.html for how it is drawn)."""
    run_dir = Path(run_dir)
    try:
        man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        cfg = json.loads((run_dir / "config.snapshot.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DialsumError(f"{run_dir}: not a dialsum run folder (no manifest.json / config.snapshot.json)") from None
    ens = _stage(man, "ensemble", run_dir)
    post = _stage(man, "postprocess", run_dir)
    scores = json.loads((run_dir / "scores.json").read_text(encoding="utf-8")) if (run_dir / "scores.json").is_file() \
        else {"rows": [], "comparisons": []}
    dev = {d.fname: d for d in load_dialogues(Path(man["data_dir"]) / "dev.csv", with_summary=True)}
    parts = {f: "select" for f in read_references(run_dir / "dev_select.csv")}
    parts |= {f: "report" for f in read_references(run_dir / "dev_report.csv")}
    final = {f: t for f, (t, _) in read_split_table(Path(post["result"]["final"])).get("dev", {}).items()}
    with open(Path(ens["dir"]) / "all_scores.csv", encoding="utf-8", newline="") as f:
        cands = [r for r in csv.DictReader(f) if r["fname"] in dev]
    metric = cfg.get("metric", {})
    truth = score_corpus([c["text"] for c in cands], [[dev[c["fname"]].summary] for c in cands],
                         metric.get("semantics", "pltrdy"), metric.get("tokenizer", "mecab")).finals()
    rows: dict[str, dict] = {}
    for c, s in zip(cands, truth):
        d = dev[c["fname"]]
        row = rows.setdefault(d.fname, {"fname": d.fname, "topic": d.topic or "", "part": parts.get(d.fname, ""),
                                         "dialogue": d.dialogue, "reference": d.summary,
                                         "final": final.get(d.fname, ""), "candidates": []})
        row["candidates"].append({"source": c["source"], "text": c["text"], "score": round(s, 4),
                                  "utility": float(c["utility"]) if c["utility"] else None,
                                  "chosen": c["chosen"] == "1"})
    for row in rows.values():
        cs = row["candidates"]
        pick = next((c for c in cs if c["chosen"]), cs[0])
        best = max(range(len(cs)), key=lambda i: cs[i]["score"])
        cs[best]["best"] = True
        row |= {"pick_source": pick["source"], "pick_score": pick["score"], "best_score": cs[best]["score"],
                "best_source": cs[best]["source"], "gap": round(cs[best]["score"] - pick["score"], 4),
                "length": len(pick["text"].split())}
    return {"run_id": run_dir.name, "rows": scores.get("rows", []), "comparisons": scores.get("comparisons", []),
            "ensemble": {k: ens["result"].get(k) for k in ("method", "chosen", "best_source", "n_sources")},
            "fit": ens["result"].get("fit"), "postprocess": post["result"].get("fitted"),
            "leaderboard": (json.loads((run_dir / "leaderboard.json").read_text(encoding="utf-8"))
                            if (run_dir / "leaderboard.json").is_file() else []),  # `dialsum submitted`
            "final": (man["stages"].get("final") or {}).get("result"),  # with final.refit
            "dialogues": list(rows.values())}
