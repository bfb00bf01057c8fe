"""`dialsum report RUN_DIR [--open]`: rebuild a finished run's report.html from its folder alone."""
from __future__ import annotations

from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.report.explorer import explorer_data
from dialsum.report.html import write_html


def report(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DialsumError(f"{run_dir}: no such run folder")
    path = write_html(run_dir / "report.html", explorer_data(run_dir))
    print(path)
    if args.open:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    return 0
