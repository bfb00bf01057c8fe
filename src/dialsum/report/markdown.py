"""The run report: every stage scored on dev-select (what chose) and dev-report (only scored), a bar chart, and the
share of ensemble picks each source won.

Trust the dev-report column: nothing was chosen on those rows, so it predicts the leaderboard. The dev-select
column is optimistic by construction (checkpoints, ensemble weights, rules and the length cap were picked there).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from dialsum.io.files import atomic_write_text
from dialsum.report.charts import bar_chart

TRUST = ("**Which number to trust:** `dev-report`. Checkpoints, ensemble membership and weights, post-processing "
         "rules and the length cap were all chosen on `dev-select`, so its numbers are optimistic; `dev-report` rows "
         "chose nothing and predict the leaderboard.")


def _cell(score: dict | None) -> str:
    if not score:
        return "—"
    ci = f" [{score['ci_low']:.2f}, {score['ci_high']:.2f}]" if "ci_low" in score else ""
    return f"{score['final']:.4f}{ci}"


def write_report(out_dir: Path, title: str, rows: list[dict], pick_sources: dict[str, str] | None,
                 extra: list[str], notice: str = "") -> Path:
    """rows: [{stage, detail, select: score dict | None, report: score dict | None}] in pipeline order."""
    out_dir = Path(out_dir)
    lines = [f"# dialsum report: {title}", "", *([notice, ""] if notice else []),
             "Dev scores (leaderboard metric; final = mean(R1, R2, RL) × 100); dev-report finals carry a 95 % bootstrap "
             "interval over its dialogues.", "", TRUST, "",
             "| stage | detail | dev-select final | dev-report final [95 %] | dev-report R1 | dev-report R2 | "
             "dev-report RL |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        rep = r.get("report")
        parts = [f"{rep[k]:.4f}" for k in ("rouge1", "rouge2", "rougeL")] if rep else ["—"] * 3
        lines.append(f"| {r['stage']} | {r['detail']} | {_cell(r.get('select'))} | {_cell(rep)} | " + " | ".join(parts) + " |")
    if pick_sources:
        counts = Counter(pick_sources.values())
        total = sum(counts.values())
        lines += ["", "## Picks by source (dev)", "", "| source | picks | share |", "|---|---:|---:|"]
        for src, n in counts.most_common():
            lines.append(f"| {src} | {n} | {n / total:.1%} |")
    png = bar_chart(out_dir / "report.png", rows)
    if png:
        lines += ["", f"![dev scores]({png.name})"]
    lines += [""] + extra
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
