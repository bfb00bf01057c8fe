"""docs/config.md, generated from the run config's pydantic schema (dialsum.config.RunConfig): every section and
field with its type, default, allowed range and description. A test fails when the page is stale.

    python scripts/config_reference.py --write
"""
from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"
HEAD = """# Run config reference

Generated from the schema (`python scripts/config_reference.py --write`; `tests/test_docs.py` fails when stale). A run
config is YAML; paths inside it are relative to its folder; `--set PATH=VALUE` edits it from the command line with the
same validation (models by name: `--set models.tiny.lora.r=32`). Model files (`configs/models/*.yaml`) hold one
`models` entry; a run config lists them as paths or as `{base: models/x.yaml, <overrides>}`.
"""


def _sections(annotation) -> list[type[BaseModel]]:
    out = []
    for t in (annotation, *typing.get_args(annotation)):
        for tt in (typing.get_args(t) or (t,)):
            if isinstance(tt, type) and issubclass(tt, BaseModel):
                out.append(tt)
    return out


def _type(annotation) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    for prefix in ("dialsum.model_specs.", "dialsum.config.", "pathlib.", "<class '", "'>"):
        text = text.replace(prefix, "")
    return text.replace("|", "\\|")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "[" + ", ".join(getattr(v, "name", "…") for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return f"`{value!r}`".replace("|", "\\|")


def _range(field) -> str:
    bounds = []
    for m in field.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(bounds)


def render() -> str:
    from dialsum.config import RunConfig

    lines, seen, todo = [HEAD], set(), [("", RunConfig)]
    while todo:
        prefix, cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        title = prefix.rstrip(".") or "run config (top level)"
        lines += ["", f"## `{title}`", ""]
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(("A base class", "Usage docs")):
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | default | range | description |", "|---|---|---|---|---|"]
        for name, f in cls.model_fields.items():
            desc = (f.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type(f.annotation)} | {_default(f)} | {_range(f)} | {desc} |")
            for sub in _sections(f.annotation):
                item = "[]" if typing.get_origin(f.annotation) is list else ""
                todo.append((f"{prefix}{name}{item}.", sub))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = render()
    if "--write" in sys.argv:
        PAGE.write_text(text, encoding="utf-8")
    else:
        print(text)
