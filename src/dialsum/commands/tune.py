"""`dialsum tune`: start or resume a study (or be one of its worker processes) and print the held-out check."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import load_config
from dialsum.errors import DialsumError
from dialsum.tune.config import load_tune_config
from dialsum.tune.storage import study_dir
from dialsum.tune.study import base_config, run_worker, tune as run_study


def tune(args) -> int:
    tc = load_tune_config(Path(args.config), args.set)
    tc = tc.model_copy(update={k: v for k, v in (("study", args.study), ("space", args.space)) if v})
    if args.trials < 0 or args.workers < 1:
        raise DialsumError("--trials must be at least 0 and --workers at least 1")
    if args.trials == 0 and args.no_summary:
        raise DialsumError("--trials 0 --no-summary: nothing to do (--trials 0 only summarises the study)")
    run_dir = Path(args.run) if args.run else None
    data_dir = Path(args.data_dir).resolve() if args.data_dir else None
    if args.worker is not None:  # one of the processes `tune --workers W` starts
        base = base_config(tc, data_dir)
        run_worker(tc, base, study_dir(base, tc.study), args.storage or tc.storage, args.trials, run_dir, args.worker)
        return 0
    s = run_study(tc, args.trials, args.workers, args.storage or tc.storage, run_dir, Path(args.config), args.set,
                  share_gpus=args.share_gpus, summary=not args.no_summary, data_dir=data_dir)
    if "check" not in s:
        print(f"study {s['study']} ({s['space']}): {s['trials']}; no held-out check (--no-summary): when every "
              f"machine has finished, `dialsum tune --config {args.config} --trials 0"
              f"{' --storage ' + args.storage if args.storage else ''}` checks and summarises")
        return 0
    c = s["check"]
    print(f"study {s['study']} ({s['space']}): {s['trials']}")
    print(f"  tuned   dev-select {c['tuned']['select']:.4f}  dev-report {c['tuned']['report']:.4f}  {s['best_params']}")
    print(f"  {'untuned' if 'differs' in c else 'default'} dev-select {c['default']['select']:.4f}  dev-report "
          f"{c['default']['report']:.4f}" + ("  (what the untuned config submits)" if "differs" in c else ""))
    if "best_single" in c:
        b = c["best_single"]
        print(f"  best single ({b['source']}) dev-select {b['select']:.4f}  dev-report {b['report']:.4f}")
    for key, against in (("paired", "untuned"), ("paired_best_single", "best single")):
        if key in c:
            p = c[key]
            print(f"  tuned - {against} on dev-report: {p['diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] "
                  f"(95 % paired bootstrap, p = {p['p_value']:.3f})")
    why = ("" if c["better"] else " (the tuned config submits exactly what the untuned one does)"
           if c.get("differs") is False else " (within dev-report noise)")
    print(f"  better than untuned: {'yes' if c['better'] else 'no'}{why}")
    if s["accepted"]:
        print(f"tuned config: {s['tuned_config']}")
    else:
        print(f"tuned config not better than untuned on dev-report: written as {s['tuned_config']} (not for "
              f"submission)")
    print(f"summary: {Path(s['tuned_config']).name and study_dir(load_config(tc.run_config), tc.study) / 'summary.md'}")
    return 0
