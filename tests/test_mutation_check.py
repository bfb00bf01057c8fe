"""scripts/mutation_check.py cannot rot silently: `--list` runs through its command line, and every entry's line is
still in its file exactly once and every test it names exists (running the entries themselves takes ~15 minutes and
is not part of the suite; docs/BENCHMARKS.md has the last result)."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_every_entry_names_a_line_that_exists_once_and_tests_that_exist():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import mutation_check
    finally:
        sys.path.pop(0)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_check.py"), "--list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(mutation_check.MUTATIONS) >= 23, r.stderr
    for m in mutation_check.MUTATIONS:
        lines = (ROOT / m.file).read_text(encoding="utf-8").split("\n")
        assert lines.count(m.old) == 1, f"{m.name}: its line is in {m.file} {lines.count(m.old)} times"
        for node in m.tests:
            path, _, name = node.partition("::")
            text = (ROOT / path).read_text(encoding="utf-8")
            assert not name or f"def {name}(" in text, f"{m.name}: no test {node}"
