"""The run report: every stage scored on dev-select (what chose) and dev-report (only scored), a bar chart, and the
share of ensemble picks each source won.

Trust the dev-report column: nothing was chosen on those rows, so it predicts the leaderboard. The dev-select
column is optimistic by construction (checkpoints, ensemble weights, rules and the length cap were picked there).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from dialsum.io.files import atomic_write_text

TRUST = ("**Which number to trust:** `dev-report`. Checkpoints, ensemble membership and weights, post-processing "
         "rules and the length cap were all chosen on `dev-select`, so its numbers are optimistic; `dev-report` rows "
         "chose nothing and predict the leaderboard.")


def _cell(score: dict | None) -> str:
    if not score:
        return "—"
    ci = f" [{score['ci_low']:.2f}, {score['ci_high']:.2f}]" if "ci_low" in score else ""
    return f"{score['final']:.4f}{ci}"


def write_report(out_dir: Path, title: str, rows: list[dict], pick_sources: dict[str, str] | None,
                 extra: list[str]) -> Path:
    """rows: [{stage, detail, select: score dict | None, report: score dict | None}] in pipeline order."""
    out_dir = Path(out_dir)
    lines = [f"# dialsum report: {title}", "",
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
    png = _bar_chart(out_dir / "report.png", rows)
    if png:
        lines += ["", f"![dev scores]({png.name})"]
    lines += [""] + extra
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _bar_chart(path: Path, rows: list[dict]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = [f"{r['stage']}\n{r['detail'][:28]}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(rows)), 3.8))
    w = 0.4
    ax.bar([i - w / 2 for i in x], [(r.get("select") or {}).get("final", 0) for r in rows], w, label="dev-select",
           color="#c4c4c4")
    ax.bar([i + w / 2 for i in x], [(r.get("report") or {}).get("final", 0) for r in rows], w, label="dev-report",
           color="#4c72b0")
    ax.set_xticks(list(x), labels, fontsize=6)
    ax.set_ylabel("dev final")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_chart(path: Path, curves: dict[str, list[dict]]) -> Path | None:
    """One panel per alignment run: every logged series of its training curve (mean reward, reward margin, KL,
    ranking loss ...) against the step."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], curves.items()):
        series = sorted({k for r in rows for k in r if k != "step"})
        for key in series:
            pts = [(r["step"], r[key]) for r in rows if key in r and r.get("step") is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, lw=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
