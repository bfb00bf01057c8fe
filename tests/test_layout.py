"""The package layout's rules, checked on the source: imports run one way (top-level and function-level imports
alike), no two modules import each other even indirectly, cli stays a thin parser, modules stay small.

The rules are data (ALLOWED); the checker runs on the real tree and, to show it can fail, on a small synthetic tree
with one forbidden import and one cycle.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
CORE = ("errors", "config", "model_specs", "run_specs", "hardware", "faults", "user_cache", "logs")  # top-level modules anyone may use

# The import rules, written once: group -> (its job, the groups it may import; its own group always included).
# docs/architecture.md renders this table (`python tests/test_layout.py --write`); a test fails when it is stale.
RULES = {
    "core": ("errors, config (YAML into typed objects), hardware (the GPU probe and backend resolver), logs, faults, "
             "user_cache, model_specs, run_specs", {"core"}),
    "io": ("competition data, candidate store, references, submission files", {"core"}),
    "scoring": ("morpheme tokenizers and their cache, the leaderboard metric, bootstrap intervals, the one-SE rule",
                {"core"}),
    "ensemble": ("ROUGE-consensus (MBR) voting, fitted on dev-select and judged by k-fold: pure", {"core", "scoring"}),
    "postprocess": ("text rules and the length cap, each kept for a held-out gain: pure", {"core", "scoring"}),
    "report": ("typed report rows, report.md, report.html and its data, experiment tracking",
               {"core", "io", "scoring"}),
    "models": ("loading, prompts, training, generation backends, tiny stand-ins, memory plan (torch lives here)",
               {"core", "io", "scoring"}),
    "align": ("preference optimisation after SFT (DPO, GRPO, BRIO ranking) rewarded by the metric",
              {"core", "io", "scoring", "models"}),
    "engine": ("generic stage machinery: keyed stages, cache, locks, child processes, run folders", {"core", "io"}),
    "stages": ("one module per stage kind (plan + run), the Plan, the run recipe",
               {"core", "io", "scoring", "ensemble", "postprocess", "report", "models", "align", "engine"}),
    "stages.names": ("the stage kinds in order (dialsum/stages/__init__.py: imports nothing)", set()),
    "tune": ("Optuna studies over stages (train, align and inference spaces)",
             {"core", "io", "scoring", "ensemble", "postprocess", "report", "engine", "stages"}),
    "commands": ("one module per command: reads arguments, calls the parts below, prints",
                 {"core", "io", "scoring", "ensemble", "postprocess", "report", "models", "align", "engine", "stages",
                  "tune"}),
    "cli": ("the argument parser (and cli_types), dispatching to commands by name", {"core", "stages.names"}),
    "main": ("`python -m dialsum`", {"cli"}),
}
ALLOWED = {group: allowed for group, (_, allowed) in RULES.items()}


def render_rules() -> str:
    """The import rules as the Markdown table docs/architecture.md shows."""
    lines = ["| group | its job | may import (besides itself) |", "|---|---|---|"]
    for group, (job, allowed) in RULES.items():
        lines.append(f"| `{group}` | {job} | {', '.join(f'`{a}`' for a in sorted(allowed - {group})) or '—'} |")
    return "\n".join(lines)


def group_of(module: str, top: str = "dialsum") -> str:
    """The rule group of a module: its sub-package, `core` for the top-level core modules, or the module itself."""
    parts = module.split(".")
    if parts == [top]:
        return "core"
    name = parts[1]
    if name in CORE:
        return "core"
    if name == "__main__":
        return "main"
    if module == f"{top}.stages":
        return "stages.names"
    if name == "cli_types":  # the command line's argument types: part of cli
        return "cli"
    return name


def modules(root: Path, top: str = "dialsum") -> dict[str, Path]:
    out = {}
    for p in sorted((root / top).rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


def imports(path: Path, mods: dict[str, Path], top: str = "dialsum") -> list[tuple[str, int]]:
    """(imported dialsum module, line) for every import statement anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                     for a in node.names]
        for n in names:
            if n == top or n.startswith(top + "."):
                while n not in mods and "." in n:
                    n = n.rpartition(".")[0]
                found.append((n, node.lineno))
    return list(dict.fromkeys(found))


def graph(root: Path, top: str = "dialsum") -> dict[str, list[tuple[str, int]]]:
    mods = modules(root, top)
    return {m: [(t, line) for t, line in imports(p, mods, top) if t != m] for m, p in mods.items()}


def violations(g: dict[str, list[tuple[str, int]]], top: str = "dialsum") -> list[str]:
    out = []
    for m, edges in g.items():
        src = group_of(m, top)
        src = "stages" if src == "stages.names" else src
        allowed = ALLOWED.get(src, set()) | {src}
        for t, line in edges:
            dst = group_of(t, top)
            if dst not in allowed and not (dst == "stages.names" and "stages" in allowed):
                out.append(f"{m} imports {t} (line {line}): rule '{src} may import only "
                           f"{', '.join(sorted(allowed))}'")
    return out


def cycles(g: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in g.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_imports_run_one_way():
    bad = violations(graph(SRC))
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(graph(SRC))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_package_says_what_it_owns_and_cli_is_thin():
    mods = modules(SRC)
    for name, path in mods.items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if path.name == "__init__.py" or name.count(".") == 1:
            assert doc, f"{path}: no docstring"
    lines = {name: len(p.read_text(encoding="utf-8").splitlines()) for name, p in mods.items()}
    assert lines["dialsum.cli"] <= 250, f"cli.py has {lines['dialsum.cli']} lines"
    long = {n: k for n, k in lines.items() if k > 400}
    assert not long, f"modules over 400 lines: {long}"
    stages = {p.stem for p in (SRC / "dialsum" / "stages").glob("*.py")}
    from dialsum.stages import ORDER, TUNING, stage_module

    for kind in ORDER + TUNING:  # one module per stage kind, each of the same shape
        mod = stage_module(kind)
        assert kind in stages and mod.KIND == kind and callable(mod.plan) and callable(mod.run), kind
        assert isinstance(mod.VERSION, int) and isinstance(mod.CHILD, bool), kind
    assert not (SRC / "dialsum" / "engine" / "graph.py").exists() and not (SRC / "dialsum" / "engine" / "tasks.py").exists()


def test_the_architecture_page_shows_the_rules_the_test_checks():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert render_rules() in text, "docs/architecture.md is stale: run python tests/test_layout.py --write"
    assert set(group_of(m) for m in modules(SRC)) <= set(RULES), "a package without a rule"


def test_the_checker_finds_a_forbidden_import_and_a_cycle(tmp_path):
    """The same checker on a small tree: scoring importing models, and engine <-> tune through function-level
    imports, are both reported (with the rule and the line)."""
    files = {
        "pkg/__init__.py": "",
        "pkg/errors.py": "",
        "pkg/scoring/__init__.py": "",
        "pkg/scoring/metric.py": "from pkg.errors import X\n\ndef f():\n    from pkg.models.loading import load\n",
        "pkg/models/__init__.py": "",
        "pkg/models/loading.py": "import pkg.scoring.metric\n",
        "pkg/engine/__init__.py": "",
        "pkg/engine/graph.py": "def g():\n    from pkg.tune import study\n",
        "pkg/tune/__init__.py": "",
        "pkg/tune/study.py": "from pkg.engine.graph import g\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    g = graph(tmp_path, "pkg")
    bad = violations(g, "pkg")
    assert "pkg.scoring.metric imports pkg.models.loading (line 4): rule 'scoring may import only core, scoring'" in bad
    assert any(b.startswith("pkg.engine.graph imports pkg.tune.study (line 2)") for b in bad)
    assert len(bad) == 2, bad  # models -> scoring and tune -> engine are allowed
    assert sorted(cycles(g)) == [["pkg.engine.graph", "pkg.tune.study"], ["pkg.models.loading", "pkg.scoring.metric"]]


if __name__ == "__main__":
    import re
    import sys

    if "--write" in sys.argv:
        text = ARCHITECTURE.read_text(encoding="utf-8")
        start, end = "<!-- import rules: generated by tests/test_layout.py -->", "<!-- end of import rules -->"
        block = f"{start}\n{render_rules()}\n{end}"
        ARCHITECTURE.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S),
                                encoding="utf-8")
    print(render_rules())


PURE = ("score", "ensemble", "postprocess", "compare", "submit")
HEAVY = ("dialsum.engine", "dialsum.stages.", "dialsum.models", "dialsum.align", "dialsum.tune", "torch",
         "transformers")


def test_the_pure_commands_import_no_engine_models_or_torch(tmp_path):
    """score, ensemble, postprocess, compare and submit are selections over CSVs: each runs here on real files and
    its process must not have imported the engine, the stages, models or torch (they would cost every call)."""
    import csv
    import json
    import subprocess
    import sys

    sample = SRC.parent / "data" / "sample"
    with open(sample / "dev.csv", encoding="utf-8") as f:
        dev = list(csv.DictReader(f))
    with open(sample / "test.csv", encoding="utf-8") as f:
        test = list(csv.DictReader(f))
    for name, rows, cut in (("a", dev, 0), ("b", dev, 5), ("t", test, 0)):
        with open(tmp_path / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["fname", "summary"])
            w.writerows([r["fname"], r.get("summary", "") [cut:] or "요약."] for r in rows)
    a, b, t, refs = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "t.csv", sample / "dev.csv"
    commands = {
        "score": ["score", "--pred", str(a), "--refs", str(refs)],
        "ensemble": ["ensemble", "--candidates", str(a), str(b), "--out", str(tmp_path / "x.csv")],
        "postprocess": ["postprocess", "--pred", str(a), "--out", str(tmp_path / "y.csv")],
        "compare": ["compare", str(a), str(b), "--refs", str(refs), "--samples", "200"],
        "submit": ["submit", "--pred", str(t), "--sample-submission", str(sample / "sample_submission.csv"),
                   "--run-id", "pure", "--out-dir", str(tmp_path / "subs")],
    }
    assert set(commands) == set(PURE)
    probe = ("import json, sys\nfrom dialsum.cli import main\nrc = main(sys.argv[1:])\n"
             f"print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith({HEAVY!r}))]))")
    for name, argv in commands.items():
        r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=300)
        rc, heavy = json.loads(r.stdout.strip().splitlines()[-1])
        assert rc == 0, (name, r.stderr[-2000:])
        assert heavy == [], f"dialsum {name} imported {heavy}"
