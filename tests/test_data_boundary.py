"""Bad input: one line naming file/row/problem, exit 2, no traceback, nothing written. Harmless quirks pass."""
from __future__ import annotations

import csv

import pytest

from conftest import run_cli
from dialsum.io.data import load_competition
from dialsum.errors import DialsumError


def rewrite(path, mutate):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows = mutate(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def drop_column(name):
    def m(rows):
        i = rows[0].index(name)
        return [r[:i] + r[i + 1:] for r in rows]
    return m


def set_cell(row, col, value):
    def m(rows):
        rows[row][rows[0].index(col)] = value
        return rows
    return m


CASES = {
    "missing_column": ("dev.csv", drop_column("summary"), ["dev.csv", "missing column", "summary"]),
    "duplicate_fname": ("train.csv", set_cell(5, "fname", "train_0"), ["train.csv", "row 5", "duplicate", "train_0"]),
    "empty_dialogue": ("test.csv", set_cell(3, "dialogue", "  "), ["test.csv", "row 3", "empty dialogue"]),
    "empty_summary": ("dev.csv", set_cell(2, "summary", ""), ["dev.csv", "row 2", "empty summary"]),
    "submission_mismatch": ("sample_submission.csv", set_cell(4, "fname", "test_999"),
                            ["sample_submission.csv", "differ", "test_999"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_csv_is_one_line_exit_2_nothing_written(case, copy_sample, tmp_path):
    name, mutate, needles = CASES[case]
    rewrite(copy_sample / name, mutate)
    out, subs = tmp_path / "runs", tmp_path / "subs"
    r = run_cli("run", "--data-dir", str(copy_sample), "--output-dir", str(out), "--submissions-dir", str(subs))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("dialsum: error:")
    for n in needles:
        assert n in line, line
    assert not out.exists() and not subs.exists()


@pytest.mark.parametrize("content,needle", [(b"", "empty"), (b"\x00\x01\x02garbage\xff\xfe", "not a CSV"),
                                            (b"\xff\xfe\xfa broken", "not UTF-8"), (b"a,b\n1,2,3,4\n", "fields")])
def test_unreadable_files(copy_sample, content, needle):
    (copy_sample / "train.csv").write_bytes(content)
    with pytest.raises(DialsumError, match=needle) as e:
        load_competition(copy_sample)
    assert "train.csv" in str(e.value)


def test_harmless_quirks_are_accepted(copy_sample, sample_data):
    # BOM + CRLF + reordered/extra columns + literal backslash-n between turns
    with open(copy_sample / "dev.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(copy_sample / "dev.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["topic", "extra", "summary", "dialogue", "fname"], lineterminator="\r\n")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "extra": "x", "dialogue": r["dialogue"].replace("\n", "\\n")})
    data = load_competition(copy_sample)
    assert [d.fname for d in data.dev] == [d.fname for d in sample_data.dev]
    assert [d.dialogue for d in data.dev] == [d.dialogue for d in sample_data.dev]
    assert data.dev[0].dialogue.count("\n") >= 3 and "\\n" not in data.dev[0].dialogue


def test_sample_data_is_competition_format(sample_data):
    assert len(sample_data.train) >= 60 and len(sample_data.dev) >= 20 and len(sample_data.test) >= 20
    assert sample_data.submission_fnames == [d.fname for d in sample_data.test]
    for d in sample_data.train:
        assert all(line.startswith("#Person") for line in d.dialogue.split("\n"))
    text = " ".join(d.dialogue for d in sample_data.train)
    assert "#PhoneNumber#" in text and "#Address#" in text


def test_written_csv_reads_back_whatever_the_text_holds(tmp_path):
    """dialsum's CSV writer against its reader: a lone carriage return (a Windows-edited dialogue, a model's output)
    is left unquoted by Python's writer and splits the row on reading; such rows are written fully quoted, the rest
    byte for byte as csv.writer writes them."""
    import io

    from dialsum.io.data import read_table
    from dialsum.io.files import csv_text

    rows = [["a", "plain, with comma", 1.5], ["b", "line\r\nend", 2], ["c", "lone\rcarriage", 3], ["d", "x\ny", 4]]
    path = tmp_path / "t.csv"
    path.write_text(csv_text(["fname", "text", "n"], rows), encoding="utf-8")
    header, back = read_table(path)
    assert header == ["fname", "text", "n"]
    assert [[r["fname"], r["text"], r["n"]] for r in back] == [[a, b, str(n)] for a, b, n in rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["fname", "text", "n"], rows[0], rows[3]])
    assert csv_text(["fname", "text", "n"], [rows[0], rows[3]]) == buf.getvalue()
