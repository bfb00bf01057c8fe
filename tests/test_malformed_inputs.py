"""Every file the harness reads, malformed: exit 2, exactly one line on stderr naming the file, no traceback, and
nothing new or changed under submissions/."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SAMPLE, run_cli
from pipelines import write_config


def _data(tmp: Path) -> Path:
    d = tmp / "data"
    if not d.exists():
        shutil.copytree(SAMPLE, d)
    return d


def _edit_csv(path: Path, fn) -> None:
    path.write_text(fn(path.read_text(encoding="utf-8")), encoding="utf-8")


def _run_on_data(tmp: Path, edit) -> tuple[list[str], str]:
    d = _data(tmp)
    edit(d)
    return ["run", "--config", "configs/default.yaml", "--data-dir", str(d), "--output-dir", str(tmp / "runs")], str(d)


def _cfg(tmp: Path, edit) -> tuple[list[str], str]:
    path = write_config(tmp / "c.yaml", edit)
    return ["run", "--config", str(path), "--output-dir", str(tmp / "runs")], str(path)


def _preds(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def _peer_pair(tmp: Path, bad: str) -> tuple[list[str], str]:
    good = _preds(tmp, "good.csv", "fname,summary\ntest_0,가 나\ntest_1,다 라\n")
    badf = _preds(tmp, "bad.csv", bad)
    return ["ensemble", "--candidates", str(good), str(badf), "--out", str(tmp / "sel.csv")], str(badf)


def _score(tmp: Path, pred: str, refs: str) -> tuple[list[str], str]:
    p = _preds(tmp, "pred.csv", pred)
    r = _preds(tmp, "refs.csv", refs)
    return ["score", "--pred", str(p), "--refs", str(r)], str(r)


def _adapter(tmp: Path, cfg_text: str | None) -> tuple[list[str], str]:
    a = tmp / "adapter"
    a.mkdir()
    (a / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    if cfg_text is not None:
        (a / "adapter_config.json").write_text(cfg_text)
    cfg = write_config(tmp / "one.yaml", keep_models=["tiny"])
    return ["generate", "--config", str(cfg), "--adapter", str(a), "--output-dir", str(tmp / "runs")], str(a)


def _store(tmp: Path, body: str) -> tuple[list[str], str]:
    s = tmp / "store"
    s.mkdir()
    head = "fname,split,text,model,adapter,decoding,sample_idx,seed,logprob\n"
    (s / "m__greedy.csv").write_text(head + body, encoding="utf-8")
    return ["ensemble", "--candidates", str(s), "--out", str(tmp / "sel.csv")], str(s / "m__greedy.csv")


def _tune(tmp: Path, raw: dict, *extra: str) -> tuple[list[str], str]:
    run_cfg = write_config(tmp / "run.yaml", lambda c: {**c, "output_dir": str(tmp / "runs")})
    p = tmp / "tune.yaml"
    p.write_text(yaml.safe_dump({"study": "s", "run_config": str(run_cfg), **raw}))
    return ["tune", "--config", str(p), "--trials", "1", *extra], str(p) if not extra else extra[-1]


def _models(c: dict, **over) -> dict:
    c["models"][0] = {**c["models"][0], **over}
    return c


CASES = {
    # competition CSVs
    "train missing column": lambda t: _run_on_data(t, lambda d: _edit_csv(d / "train.csv", lambda s: s.replace("summary,", "summ,", 1))),
    "dev duplicate fname": lambda t: _run_on_data(t, lambda d: _edit_csv(d / "dev.csv", lambda s: s.replace("dev_1,", "dev_0,", 1))),
    "test empty dialogue": lambda t: _run_on_data(t, lambda d: (d / "test.csv").write_text("fname,dialogue\ntest_0,\"  \"\n", encoding="utf-8")),
    "dev empty summary": lambda t: _run_on_data(t, lambda d: (d / "dev.csv").write_text("fname,dialogue,summary\ndev_0,\"#Person1#: 안녕\",\n", encoding="utf-8")),
    "train empty file": lambda t: _run_on_data(t, lambda d: (d / "train.csv").write_text("")),
    "dev not utf-8": lambda t: _run_on_data(t, lambda d: (d / "dev.csv").write_bytes("fname,dialogue,summary\n".encode() + "가".encode("cp949") + b",x,y\n")),
    "test NUL bytes": lambda t: _run_on_data(t, lambda d: (d / "test.csv").write_bytes(b"fname,dialogue\ntest_0,\x00\n")),
    "sample_submission differs": lambda t: _run_on_data(t, lambda d: _edit_csv(d / "sample_submission.csv", lambda s: s.replace("test_0", "test_x", 1))),
    "ragged row": lambda t: _run_on_data(t, lambda d: _edit_csv(d / "dev.csv", lambda s: s + "dev_x,a,b,c,d,e\n")),
    "duplicate header": lambda t: _run_on_data(t, lambda d: _edit_csv(d / "dev.csv", lambda s: s.replace("topic", "summary", 1))),
    "missing train.csv": lambda t: _run_on_data(t, lambda d: (d / "train.csv").unlink()),
    # candidate CSVs
    "candidates missing summary": lambda t: _peer_pair(t, "fname,text\ntest_0,x\n"),
    "candidates duplicate fname": lambda t: _peer_pair(t, "fname,summary\ntest_0,x\ntest_0,y\n"),
    "candidates missing file": lambda t: (["ensemble", "--candidates", str(t / "nope.csv"), str(t / "nope2.csv"), "--out", str(t / "o.csv")], str(t / "nope.csv")),
    # reference CSVs
    "refs without summary": lambda t: _score(t, "fname,summary\ndev_0,x\n", "fname,text\ndev_0,x\n"),
    "refs empty reference": lambda t: _score(t, "fname,summary\ndev_0,x\n", "fname,summary1,summary2\ndev_0,,\n"),
    "pred misses refs rows": lambda t: _score(t, "fname,summary\ndev_0,x\n", "fname,summary\ndev_0,x\ndev_1,y\n"),
    "refs duplicate fname": lambda t: _score(t, "fname,summary\ndev_0,x\n", "fname,summary\ndev_0,x\ndev_0,y\n"),
    # configs
    "config unknown key": lambda t: _cfg(t, lambda c: {**c, "seeed": 1}),
    "config wrong type": lambda t: _cfg(t, lambda c: {**c, "seed": "abc"}),
    "config missing model file": lambda t: _cfg(t, lambda c: _models(c, base=str(ROOT / "configs" / "models" / "nope.yaml"))),
    "config rank vLLM cannot serve": lambda t: _cfg(t, lambda c: _models(c, lora={"r": 12})),
    "set unknown model": lambda t: (["train", "--dry-run", "--set", "models.nope.lora.r=8"], "models.nope.lora.r=8"),
    "set not PATH=VALUE": lambda t: (["train", "--dry-run", "--set", "seed"], "seed"),
    "set bad value": lambda t: (lambda a: (a[0] + ["--set", "seed=abc"], "--set seed=abc"))(_cfg(t, lambda c: c)),
    "config invalid YAML": lambda t: (lambda p: (["run", "--config", str(p)], str(p)))(_preds(t, "bad.yaml", "name: [unclosed\n")),
    # adapters
    "adapter without config": lambda t: _adapter(t, None),
    "adapter not LoRA": lambda t: _adapter(t, json.dumps({"peft_type": "PREFIX_TUNING", "r": 8})),
    "adapter rank mismatch": lambda t: _adapter(t, json.dumps({"peft_type": "LORA", "r": 12})),
    "adapter config not JSON": lambda t: _adapter(t, "{not json"),
    # candidate stores (and a truncated part)
    "store bad sample_idx": lambda t: _store(t, "test_0,test,가,m,,greedy,zero,0,\n"),
    "store truncated part": lambda t: _store(t, "test_0,test,가,m,,greedy,0,0,\ntest_1,te"),
    "store empty folder": lambda t: (lambda s: (["ensemble", "--candidates", str(s), "--out", str(t / "o.csv")], str(s)))(
        (t / "empty").mkdir() or t / "empty"),
    # post-processing fits, tuning YAMLs, storage URLs
    "fitted JSON unknown rule": lambda t: (["postprocess", "--pred", str(_preds(t, "p.csv", "fname,summary\na,x\n")), "--fitted",
                                            str(_preds(t, "fit.json", json.dumps({"rules": ["nope"]})))], str(t / "fit.json")),
    "tune YAML bad rank": lambda t: _tune(t, {"train": {"lora_r": [12]}}),
    "tune YAML unknown key": lambda t: _tune(t, {"trails": 3}),
    "storage URL nonsense": lambda t: _tune(t, {}, "--storage", "not-a-url"),
    "storage URL unopenable": lambda t: _tune(t, {}, "--storage", f"sqlite:///{t}/no/such/dir/x.db"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_is_one_line_exit_2_and_writes_no_submission(case, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "earlier.csv").write_text("kept\n")
    args, names = CASES[case](tmp_path)
    r = run_cli(*args, "--submissions-dir", str(subs)) if args[0] == "run" else run_cli(*args)
    assert r.returncode == 2, (case, r.returncode, r.stderr[-1500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, (case, r.stderr[-1500:])
    assert "Traceback" not in r.stderr and lines[0].startswith("dialsum: error: ")
    assert Path(names).name in lines[0], (case, lines[0])
    assert sorted(p.name for p in subs.iterdir()) == ["earlier.csv"] and (subs / "earlier.csv").read_text() == "kept\n"

