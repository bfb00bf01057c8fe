"""Faults of the machine, not the input: a full disk, a folder without write permission, a filesystem without hard
links. One line and exit 2 (or, for hard links, a submission written another safe way), nothing half-written."""
from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import pytest

from conftest import SAMPLE
from dialsum.cli import main

PRED = "fname,summary\n" + "".join(f"test_{i},#Person1#가 말한다.\n" for i in range(24))


@pytest.fixture
def pred(tmp_path) -> Path:
    p = tmp_path / "pred.csv"
    p.write_text(PRED, encoding="utf-8")
    return p


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dialsum: error: ")
    return err[0]


def test_disk_full_while_writing_is_one_line_and_leaves_no_file(tmp_path, pred, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["postprocess", "--pred", str(pred), "--out", str(out / "post.csv")]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert list(out.iterdir()) == []  # neither the output nor its temp file


def test_submission_on_a_full_disk_writes_nothing(tmp_path, pred, capsys, monkeypatch):
    subs = tmp_path / "subs"
    real = Path.write_text

    def full(self, *a, **k):
        if self.parent == subs:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["submit", "--pred", str(pred), "--sample-submission", str(SAMPLE / "sample_submission.csv"),
                 "--run-id", "r", "--out-dir", str(subs)]) == 2
    line = _one_line(capsys)
    assert "No space left on device" in line and str(subs) in line
    assert list(subs.iterdir()) == []


def test_output_folder_without_write_permission_is_one_line(tmp_path, pred, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_open = builtins.open

    def guarded(file, mode="r", *a, **k):  # what a read-only folder does to a non-root user
        if any(m in mode for m in "wax") and str(file).startswith(str(locked)):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *a, **k)

    pred.with_name("p2.csv").write_text(PRED, encoding="utf-8")
    monkeypatch.setattr(builtins, "open", guarded)
    assert main(["ensemble", "--candidates", str(pred), str(pred.with_name("p2.csv")), "--out", str(locked / "s.csv")]) == 2
    line = _one_line(capsys)
    assert "Permission denied" in line and str(locked) in line
    assert list(locked.iterdir()) == []


def test_a_filesystem_without_hard_links_still_gets_an_exclusive_validated_submission(tmp_path, pred, capsys,
                                                                                       monkeypatch):
    def no_links(src, dst, *a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    args = ["submit", "--pred", str(pred), "--sample-submission", str(SAMPLE / "sample_submission.csv"),
            "--run-id", "r", "--out-dir", str(tmp_path / "subs")]
    assert main(args) == 0 and main(args) == 0  # the same submission twice: one file
    pred.write_text(PRED.replace("말한다", "묻는다", 1), encoding="utf-8")
    assert main(args) == 0  # a different one: a new name, the first untouched
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["r-2.csv", "r.csv"]
    assert "말한다" in (tmp_path / "subs" / "r.csv").read_text(encoding="utf-8").split("\n")[1]
