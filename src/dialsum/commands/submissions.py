"""`dialsum submitted FILE --public SCORE` records a leaderboard upload in submissions/log.csv (and in its run's
report); `dialsum submissions` prints the log with how far dev-report predicts the public score."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from dialsum.errors import DialsumError
from dialsum.io.submission_log import append_entry, read_log


def _run_of(file: Path, runs: Path) -> Path:
    """The run folder whose submit stage (or final refit: its dev-report estimate is the run's) wrote `file` (its
    manifest names the path); else one line saying so."""
    target = file.resolve()
    for man in sorted(runs.glob("*/manifest.json")):
        try:
            stages = json.loads(man.read_text(encoding="utf-8"))["stages"]
        except (OSError, ValueError):
            continue
        for name in ("submit", "final"):
            path = (stages.get(name) or {}).get("result", {}).get("path") if isinstance(stages, dict) else None
            if path and Path(path).resolve() == target:
                return man.parent
    raise DialsumError(f"{file}: not a submission dialsum wrote (no run under {runs} has it; --runs names the "
                       f"runs folder)")


def _final_report(run_dir: Path) -> dict:
    """The run's post-processed final on dev-report: score, interval and each dialogue's score."""
    man = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]
    rows = json.loads((run_dir / "scores.json").read_text(encoding="utf-8"))["rows"]
    final = next(r for r in rows if r["stage"] == "postprocess")["report"]
    return {**final, "per_dialogue": man["postprocess"]["result"]["report"]["per_dialogue"],
            "rows": json.loads((run_dir / "dev_split.json").read_text(encoding="utf-8"))["report"]}


def submitted(args) -> int:
    file = Path(args.file)
    if file.name.endswith(("-smoke.csv", "-smoke-final.csv", "-smoke-final-pseudo.csv")):
        raise DialsumError(f"{file}: a smoke run's file (data.limit): not a real submission")
    runs = Path(args.runs) if args.runs else file.resolve().parent.parent / "runs"
    run_dir = _run_of(file, runs)
    rep = _final_report(run_dir)
    cfg = json.loads((run_dir / "config.snapshot.json").read_text(encoding="utf-8"))
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "file": file.name,
             "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "run_id": run_dir.name,
             "config": cfg.get("name", ""), "dev_report": f"{rep['final']:.4f}", "ci_low": f"{rep['ci_low']:.4f}",
             "ci_high": f"{rep['ci_high']:.4f}", "public": args.public, "private": args.private,
             "note": args.note or ""}
    log = file.resolve().parent / "log.csv"
    append_entry(log, entry)
    board = run_dir / "leaderboard.json"  # the run's report.html shows what the leaderboard said
    known = json.loads(board.read_text(encoding="utf-8")) if board.is_file() else []
    board.write_text(json.dumps(known + [entry], ensure_ascii=False, indent=1), encoding="utf-8")
    try:
        from dialsum.report.explorer import explorer_data
        from dialsum.report.html import write_html

        write_html(run_dir / "report.html", explorer_data(run_dir))
    except (DialsumError, OSError):
        pass  # the log is what matters; the page is rebuilt by `dialsum report` later
    print(f"{log}: {file.name} (run {run_dir.name}): dev-report {entry['dev_report']} [{entry['ci_low']}, "
          f"{entry['ci_high']}], public {args.public}" + (f", private {args.private}" if args.private is not None else ""))
    return 0


def table(log: Path, runs: Path) -> dict:
    """The log sorted by time, each upload's paired dev-report difference to the best public score before it, and
    (from 3 uploads) how well dev-report ranks the public scores."""
    from dialsum.scoring.bootstrap import compare

    rows = sorted(read_log(log), key=lambda r: r["time"])
    finals: dict[str, dict] = {}
    out, best = [], None
    for r in rows:
        entry = {k: r[k] for k in r} | {k: float(r[k]) if r[k] else None
                                        for k in ("dev_report", "ci_low", "ci_high", "public", "private")}
        try:
            finals.setdefault(r["run_id"], _final_report(runs / r["run_id"]))
        except (OSError, ValueError, KeyError, StopIteration):
            finals.setdefault(r["run_id"], None)
        vs = None
        if best is not None and finals.get(r["run_id"]) and finals.get(best["run_id"]) \
                and finals[r["run_id"]]["rows"] == finals[best["run_id"]]["rows"]:
            c = compare(finals[r["run_id"]]["per_dialogue"], finals[best["run_id"]]["per_dialogue"]).as_dict()
            vs = {"than": best["file"], "diff": c["diff"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]}
        entry["vs_previous_best"] = vs
        out.append(entry)
        if best is None or entry["public"] > best["public"]:
            best = entry
    summary = None
    if len(out) >= 3:
        summary = {"n": len(out), "spearman": _spearman([e["dev_report"] for e in out], [e["public"] for e in out]),
                   "mean_gap": sum(e["public"] - e["dev_report"] for e in out) / len(out),
                   "caveat": "the public split is small: a rank correlation over a few uploads is noisy"}
    return {"log": str(log), "entries": out, "dev_report_vs_public": summary}


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    sa = sum((x - ma) ** 2 for x in ra) ** 0.5
    sb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (sa * sb) if sa and sb else 0.0


def submissions(args) -> int:
    folder = Path(args.dir)
    t = table(folder / "log.csv", Path(args.runs) if args.runs else folder.resolve().parent / "runs")
    if args.json:
        print(json.dumps(t, ensure_ascii=False))
        return 0
    if not t["entries"]:
        print(f"{folder / 'log.csv'}: no uploads logged yet (dialsum submitted FILE --public SCORE)")
        return 0
    print(f"{'time':<20} {'file':<34} {'dev-report [95 %]':<26} {'public':>8}  vs previous best (dev-report, paired)")
    for e in t["entries"]:
        vs = e["vs_previous_best"]
        vs_text = (f"{vs['diff']:+.4f} [{vs['ci_low']:+.4f}, {vs['ci_high']:+.4f}] vs {vs['than']}" if vs else "—")
        print(f"{e['time']:<20} {e['file'][:34]:<34} {e['dev_report']:.4f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]"
              f"     {e['public']:>8.4f}  {vs_text}")
    s = t["dev_report_vs_public"]
    if s:
        print(f"dev-report vs public over {s['n']} uploads: rank correlation {s['spearman']:+.2f}, mean gap (public - "
              f"dev-report) {s['mean_gap']:+.2f}; {s['caveat']}")
    return 0
