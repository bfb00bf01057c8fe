"""The per-stage dev report: a Markdown table, a bar chart (PNG) and the share of picks each source won."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from dialsum.io_utils import atomic_write_text


def write_report(run_dir: Path, rows: list[dict], pick_sources: dict[str, str] | None, extra: list[str]) -> Path:
    """rows: [{stage, detail, final, rouge1, rouge2, rougeL}] in pipeline order."""
    run_dir = Path(run_dir)
    lines = [f"# dialsum report: {run_dir.name}", "", "Dev scores (leaderboard metric; final = mean(R1, R2, RL) x 100).", "",
             "| stage | detail | final | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['detail']} | {r['final']:.4f} | {r['rouge1']:.4f} | {r['rouge2']:.4f} | {r['rougeL']:.4f} |")
    if pick_sources:
        counts = Counter(pick_sources.values())
        total = sum(counts.values())
        lines += ["", "## Ensemble picks by source (dev)", "", "| source | picks | share |", "|---|---:|---:|"]
        for src, n in counts.most_common():
            lines.append(f"| {src} | {n} | {n / total:.1%} |")
    png = _bar_chart(run_dir / "report.png", rows)
    if png:
        lines += ["", f"![dev scores]({png.name})"]
    lines += [""] + extra
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _bar_chart(path: Path, rows: list[dict]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [f"{r['stage']}\n{r['detail']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows)), 3.5))
    ax.bar(range(len(rows)), [r["final"] for r in rows], color="#4c72b0")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("dev final")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
