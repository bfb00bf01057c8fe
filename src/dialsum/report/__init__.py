"""The run report: typed rows and comparisons (`run_report`), report.md (`markdown`, `charts`), report.html and its
per-dialogue data (`html`, `explorer`), and experiment tracking (`tracking`). Reads stage results, never runs a stage."""
