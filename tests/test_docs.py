"""The documentation a first reader meets stays true: the README is short with the code map in its first half and
links that exist, the config reference is the schema's (generated), and the architecture page shows the import
rules the layout test checks (tests/test_layout.py)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_with_the_code_map_first_and_links_that_exist():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines"
    assert lines.index("## Code map") < len(lines) / 2
    for target in re.findall(r"\]\(([^)#]+)\)", "\n".join(lines)):
        assert (ROOT / target).exists(), f"README links {target}, which does not exist"
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def test_the_config_reference_is_generated_from_the_schema():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert page == ref.render(), "docs/config.md is stale: run python scripts/config_reference.py --write"
    rows = [ln for ln in page.splitlines() if ln.startswith("| `")]
    assert rows and all(not ln.rstrip().endswith("|  |") for ln in rows), "a config field without a description"
    assert "| `lora` |" in page and "| `r` |" in page and "## `models[].align`" in page
