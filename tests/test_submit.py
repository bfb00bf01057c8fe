from __future__ import annotations

import csv

import pytest

from conftest import SAMPLE, run_cli
from dialsum.errors import DialsumError
from dialsum.io.submission import validate_submission, write_submission


def test_written_submission_parses_back_and_never_overwrites(tmp_path, sample_data):
    summaries = {d.fname: f"{d.fname} 요약" for d in sample_data.test}
    a = write_submission(tmp_path, "r1", SAMPLE / "sample_submission.csv", summaries)
    b = write_submission(tmp_path, "r1", SAMPLE / "sample_submission.csv", {**summaries, "test_0": "다른 요약"})
    assert a.name == "r1.csv" and b.name == "r1-2.csv"
    with open(a, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["", "fname", "summary"]  # the leaderboard's format, leading unnamed index
    assert [r[1] for r in rows[1:]] == sample_data.submission_fnames
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(len(rows) - 1)]
    validate_submission(b, sample_data.submission_fnames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1-2.csv", "r1.csv"]  # no temp files left


def test_empty_summary_writes_nothing(tmp_path, sample_data):
    summaries = {d.fname: "요약" for d in sample_data.test}
    summaries["test_3"] = "  "
    with pytest.raises(DialsumError, match="test_3"):
        write_submission(tmp_path, "r", SAMPLE / "sample_submission.csv", summaries)
    assert list(tmp_path.iterdir()) == []


def test_submit_cli_reorders_to_sample_order(tmp_path, sample_data):
    pred = tmp_path / "p.csv"
    with open(pred, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "summary"])
        for d in reversed(sample_data.test):
            w.writerow([d.fname, "요약 " + d.fname])
    r = run_cli("submit", "--pred", str(pred), "--sample-submission", str(SAMPLE / "sample_submission.csv"),
                "--out-dir", str(tmp_path / "subs"), "--run-id", "x")
    assert r.returncode == 0, r.stderr
    validate_submission(tmp_path / "subs" / "x.csv", sample_data.submission_fnames)
