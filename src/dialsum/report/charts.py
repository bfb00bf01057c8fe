"""The report's PNG charts (matplotlib, Agg): dev scores per stage, and alignment training curves; none when
matplotlib is missing."""
from __future__ import annotations

from pathlib import Path


def bar_chart(path: Path, rows: list[dict]) -> Path | None:
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
