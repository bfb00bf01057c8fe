"""A finished study's outputs: the tuned run config as YAML `dialsum run --config` takes unchanged, the Optuna
plots, and a Markdown summary."""
from __future__ import annotations

import json
import os
from pathlib import Path

from dialsum.config import deep_merge, load_config, read_yaml
from dialsum.logs import log
from dialsum.io.files import atomic_write_text
from dialsum.tune.config import TuneConfig


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), start.resolve())


def write_tuned_yaml(tc: TuneConfig, best: dict, tuned_dir: Path, check: dict, data_dir: Path | None = None) -> Path:
    """The run config with the best parameters, as YAML that `dialsum run --config` takes unchanged, in `tuned/`
    beside the tuning YAML: `<study>.yaml` (configs/tuned/<study>.yaml for configs/tune.yaml) only when the held-out
    check says the tuned config is better (`check["better"]`), else `<study>.rejected.yaml` with the numbers in its
    header, so following the README never submits a config dev-report could not tell from the untuned one. Its
    data dir is the one the study tuned over (`data_dir`)."""
    import yaml

    accepted = bool(check.get("better"))
    out = Path(tuned_dir).resolve() / f"{tc.study}{'' if accepted else '.rejected'}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    src = Path(tc.run_config)
    raw = read_yaml(src)
    here = out.parent
    for key in ("output_dir", "submissions_dir"):
        if key in raw:
            raw[key] = _rel(src.parent / str(raw[key]), here)
    if data_dir is not None:
        raw["data"] = {**(raw.get("data") or {}), "dir": _rel(Path(data_dir), here)}
    elif isinstance(raw.get("data"), dict) and "dir" in raw["data"]:
        raw["data"]["dir"] = _rel(src.parent / str(raw["data"]["dir"]), here)
    models = []
    for entry in raw.get("models", []):
        entry = {"base": entry} if isinstance(entry, str) else dict(entry)
        if "base" in entry:
            entry["base"] = _rel(src.parent / entry["base"], here)
        models.append(entry)
    raw["models"] = models
    if "overrides" in best:
        for entry in models:
            name = entry.get("name") or read_yaml((here / entry["base"]).resolve()).get("name")
            if name == best["model"]:
                entry.update(deep_merge({k: entry.get(k, {}) for k in best["overrides"]}, best["overrides"]))
        raw["name"] = f"{raw.get('name', 'run')}-tuned-{tc.study}"
    else:
        # the tuned weights stay under the ensemble's guard (k-fold on dev-select, one-SE rule against the best single
        # source and the uniform consensus); the tuned rules stay under the post-processing ablation (one-SE rule)
        raw["ensemble"] = {"weights": best["weights"], "utility": best["utility"], "guard": True}
        pp = best["postprocess"]
        if pp is not None:
            raw["postprocess"] = {"rules": list(pp.rules), "ablate": True, "tune_length_cap": True}
        raw["name"] = f"{raw.get('name', 'run')}-tuned-{tc.study}"
    text = f"# Written by `dialsum tune` (study {tc.study}, {tc.space} space): run with `dialsum run --config {out}`\n"
    for key, against in (("paired", "untuned"), ("paired_best_single", "best single source")):
        if key in check:
            p = check[key]
            text += (f"# dev-report, tuned - {against}: {p['diff']:+.4f}, 95 % interval [{p['ci_low']:+.4f}, "
                     f"{p['ci_high']:+.4f}] over {p['n']} dialogues\n")
    if not accepted and check.get("differs") is False:
        text += "# REJECTED: this config submits exactly what the untuned one does; keep the untuned config\n"
    elif not accepted:
        text += ("# REJECTED: dev-report cannot tell this config from the untuned one (its interval reaches 0 or "
                 "below); keep the untuned config\n")
    text += yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    atomic_write_text(out, text)
    stale = out.with_name(f"{tc.study}{'.rejected' if accepted else ''}.yaml")
    stale.unlink(missing_ok=True)  # an earlier verdict on this study must not outlive this one
    load_config(out)  # what we write must load
    return out


def write_plots(study, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vm

    made = []
    for name, fn in (("history", vm.plot_optimization_history), ("importances", vm.plot_param_importances),
                     ("slice", vm.plot_slice)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(6, fig.get_size_inches()[0]), 4)
            path = folder / f"{name}.png"
            fig.savefig(path, dpi=90, bbox_inches="tight")
            plt.close(fig)
            made.append(str(path))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # e.g. importances need 2+ distinct trials
            log(f"plot {name} skipped: {e}")
    return made


def write_summary_md(path: Path, s: dict) -> None:
    c = s["check"]
    lines = [f"# Study {s['study']} ({s['space']} space)", "",
             f"Trials: {', '.join(f'{k.lower()} {v}' for k, v in s['trials'].items() if v)}; best trial {s['best_trial']}.",
             "", "| config | dev-select | dev-report |", "|---|---:|---:|",
             f"| tuned (best trial) | {c['tuned']['select']:.4f} | {c['tuned']['report']:.4f} |",
             f"| untuned default | {c['default']['select']:.4f} | {c['default']['report']:.4f} |"]
    if "best_single" in c:
        b = c["best_single"]
        lines.append(f"| best single source ({b['source']}) | {b['select']:.4f} | {b['report']:.4f} |")
    for key, against in (("paired", "untuned default"), ("paired_best_single", "best single source")):
        if key in c:
            p = c[key]
            lines.append(f"\nTuned − {against} on dev-report (paired bootstrap over {p['n']} dialogues): "
                         f"{p['diff']:+.4f}, 95 % interval [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}], "
                         f"p = {p['p_value']:.3f}.")
    if c.get("differs") is False:
        lines += ["", "**Better than untuned: no**: the tuned config submits exactly what the untuned one does (the "
                  "ensemble's guard and the post-processing ablation undid the tuned choices).", ""]
    else:
        lines += ["", f"**Better than untuned: {'yes' if c.get('better') else 'no'}** (only when the paired interval "
                  "against the untuned config lies above zero; otherwise dev-report cannot resolve the difference).",
                  ""]
    lines += ["", "Tuning saw only dev-select; dev-report was scored once, after the study.", "",
              "Best parameters:", "", "```json", json.dumps(s["best_params"], indent=2, ensure_ascii=False), "```", "",
              f"Tuned config: `{s['tuned_config']}`", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in s["plots"]]
    atomic_write_text(path, "\n".join(lines) + "\n")
