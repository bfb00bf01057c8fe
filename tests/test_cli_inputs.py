"""Input checks as a class: every option of every command is either a flag, a choice, a checked number or a checked
path (dialsum.cli_types), or one of the named free-text options below; every numeric field of every config section
carries its range. A bad value is one line naming the option or key and the problem, exit 2, before any work."""
from __future__ import annotations

import argparse
import typing

import annotated_types
import pytest
from pydantic import BaseModel

from conftest import ROOT, run_cli
from dialsum import cli_types
from dialsum.cli import build_parser

PATH_TYPES = (cli_types.existing_file, cli_types.existing_dir, cli_types.existing_path, cli_types.output_file,
              cli_types.output_dir)
# options whose value is free text: names, ids, URLs, lists parsed by the command (each says why it is not a path)
FREE_TEXT = {
    "set": "PATH=VALUE config edits, validated with the config",
    "run_id": "a folder name, checked by the run config's name rule",
    "model": "model names (or a model YAML for preview, read by load_model_config)",
    "only_model": "model names, checked against the config",
    "force": "stage names, checked against the plan",
    "weights": "source=weight pairs, parsed and range-checked by the ensemble command",
    "rules": "rule names, checked against the post-processing rules",
    "storage": "an Optuna storage URL",
    "study": "a study name",
    "note": "free text kept in the submission log",
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options():
    for cmd, sp in _subcommands().items():
        for action in sp._actions:
            if not isinstance(action, argparse._HelpAction):
                yield cmd, action


def _kind(action) -> str:
    if action.nargs == 0 or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "flag"
    if action.choices:
        return "choice"
    if hasattr(action.type, "least"):
        return "count"
    if hasattr(action.type, "bounds"):
        return "range"
    if action.type in PATH_TYPES:
        return "path"
    if action.type is cli_types.split_counts:  # SPLIT=N pairs: tests/test_time_plan.py refuses a bad one in a line
        return "parsed"
    return "free" if action.dest in FREE_TEXT else "unchecked"


def test_every_option_of_every_command_is_checked():
    unchecked = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in _options() if _kind(a) == "unchecked"]
    assert not unchecked, f"options with no range or kind check: {unchecked}"


def _argv(cmd: str, action, value: str) -> list[str]:
    return [cmd, value] if not action.option_strings else [cmd, action.option_strings[0], value]


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("cmd,action", [(c, a) for c, a in _options() if _kind(a) == "count"],
                         ids=lambda x: x if isinstance(x, str) else "/".join(x.option_strings or [x.dest]))
def test_a_count_below_its_least_is_one_line(cmd, action, capsys):
    err = _refused(_argv(cmd, action, str(action.type.least - 1)), capsys)
    assert f"must be at least {action.type.least}" in err and (action.option_strings or [action.dest])[0] in err
    assert "is not a whole number" in _refused(_argv(cmd, action, "3.5"), capsys)


@pytest.mark.parametrize("cmd,action", [(c, a) for c, a in _options() if _kind(a) == "range"],
                         ids=lambda x: x if isinstance(x, str) else "/".join(x.option_strings or [x.dest]))
def test_a_number_outside_its_range_is_one_line(cmd, action, capsys):
    low, high = action.type.bounds
    extra = ["--public", "50"] if action.option_strings != ["--public"] else []
    for bad in (str(high + 0.5), str(low - 1)):
        err = _refused([cmd, "README.md", *extra, action.option_strings[0], bad], capsys)
        assert f"must be between {low:g} and {high:g}" in err
    assert "is not a number" in _refused([cmd, "README.md", *extra, action.option_strings[0], "high"], capsys)


@pytest.mark.parametrize("cmd,action", [(c, a) for c, a in _options() if _kind(a) == "path"],
                         ids=lambda x: x if isinstance(x, str) else "/".join(x.option_strings or [x.dest]))
def test_a_path_of_the_wrong_kind_is_one_line(cmd, action, tmp_path, capsys):
    a_file, a_dir = tmp_path / "f.csv", tmp_path / "d"
    a_file.write_text("fname,summary\n")
    a_dir.mkdir()
    kind = action.type
    if kind in (cli_types.existing_file, cli_types.existing_dir, cli_types.existing_path):
        assert "no such" in _refused(_argv(cmd, action, str(tmp_path / "missing")), capsys)
    wrong = {cli_types.existing_file: a_dir, cli_types.output_file: a_dir, cli_types.existing_dir: a_file,
             cli_types.output_dir: a_file}.get(kind)
    if wrong is not None:
        assert str(wrong) in _refused(_argv(cmd, action, str(wrong)), capsys)


def _sections() -> list[type[BaseModel]]:
    from dialsum.config import RunConfig
    from dialsum.tune.config import TuneConfig

    seen, todo = [], [RunConfig, TuneConfig]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for f in model.model_fields.values():
            todo += [t for t in _leaves(f.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    return seen


def _leaves(annotation) -> list:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return [annotation]
    return [x for a in args for x in _leaves(a)] if args else [annotation]


def _bounded(metadata) -> bool:
    return any(isinstance(m, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt,
                              annotated_types.Interval)) for m in metadata)


UNBOUNDED = {("DecodingSpec", "length_penalty"): "any sign is meaningful (negative favours short beams)",
             ("TrainSpace", "lora_r"): "a set, not a range: each rank must be one vLLM serves (its field validator)"}


def test_every_numeric_config_field_has_its_range():
    missing = []
    for model in _sections():
        for name, f in model.model_fields.items():
            if (model.__name__, name) in UNBOUNDED:
                continue
            leaves = _leaves(f.annotation)
            numeric = [x for x in leaves if x in (int, float)]
            if numeric and not _bounded(f.metadata):
                missing.append(f"{model.__name__}.{name}")
            for x in leaves:  # list/tuple/dict elements: Annotated[float, Field(ge=...)]
                if typing.get_origin(x) is typing.Annotated and typing.get_args(x)[0] in (int, float):
                    if not _bounded([m for fi in typing.get_args(x)[1:] for m in getattr(fi, "metadata", [fi])]):
                        missing.append(f"{model.__name__}.{name} (elements)")
    assert not missing, f"numeric config fields without a range: {missing}"


@pytest.mark.parametrize("edit,key", [
    ("models.tiny.train.max_steps=0", "train.max_steps 0"), ("models.tiny.train.save_total_limit=0", "save_total_limit"),
    ("generate.gpu_memory_utilization=0", "gpu_memory_utilization"), ("ensemble.cv_folds=1", "cv_folds 1"),
    ("models.tiny.decodings.0.top_k=-1", "top_k"), ("models.tiny.tiny.num_key_value_heads=3", "num_key_value_heads"),
    ("ensemble.weights={tiny: -1}", "weights"), ("models.tiny.lora.alpha=0", "alpha")])
def test_a_config_value_out_of_range_is_one_line(edit, key):
    r = run_cli("train", "--dry-run", "--config", "configs/default.yaml", "--set", edit, cwd=ROOT)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and key in lines[0] and "Traceback" not in r.stderr, r.stderr
