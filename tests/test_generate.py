"""Candidate generation (transformers backend) and the resumable candidate store."""
from __future__ import annotations

import pytest

from dialsum.candidates import Journal, part_path, read_part
from dialsum.config import DecodingSpec, GenerateSpec
from dialsum.generate import generate_candidates


def _cfg(tiny_cfg, decodings):
    return tiny_cfg.model_copy(update={"decodings": decodings, "max_new_tokens": 24})


def test_counts_provenance_and_seeded_reproducibility(tiny_cfg, sample_data, tmp_path):
    decs = [DecodingSpec(name="greedy"), DecodingSpec(name="beam3", strategy="beam", num_beams=3, n=2),
            DecodingSpec(name="s", strategy="sample", n=3, temperature=0.8, seed=7)]
    cfg = _cfg(tiny_cfg, decs)
    rows = {"dev": sample_data.dev[:5], "test": sample_data.test[:4]}
    paths = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "a", GenerateSpec(batch_size=3))
    got = {p.stem.split("__")[1]: read_part(p) for p in paths}
    assert {k: len(v) for k, v in got.items()} == {"greedy": 9, "beam3": 18, "s": 27}
    for c in got["s"]:
        assert c.model == cfg.name and c.decoding == "s" and c.seed == 7 and c.split in ("dev", "test")
    assert sorted({(c.fname, c.sample_idx) for c in got["s"] if c.fname == "dev_0"}) == [("dev_0", i) for i in range(3)]
    again = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "b", GenerateSpec(batch_size=3))
    assert [c.text for c in read_part(again[2])] == [c.text for c in got["s"]]


def test_kill_mid_part_then_rerun_completes_without_duplicates(tiny_cfg, sample_data, tmp_path):
    cfg = _cfg(tiny_cfg, [DecodingSpec(name="greedy")])
    rows = {"dev": sample_data.dev[:6]}
    store = tmp_path / "store"
    full = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "ref", GenerateSpec())
    want = {(c.fname, c.text) for c in read_part(full[0])}
    # simulate a kill: two chunks journaled, a torn third line, no final part
    path = part_path(store, cfg.name, "greedy")
    j = Journal(path)
    first = [c for c in read_part(full[0])][:2]
    j.append(first)
    with open(j.path, "a", encoding="utf-8") as f:
        f.write('{"fname": "dev_2", "spl')
    assert not path.exists()
    generate_candidates(cfg, cfg.path, None, rows, store, GenerateSpec(), chunk=2)
    got = read_part(path)
    assert len(got) == 6 and len({c.fname for c in got}) == 6
    assert {(c.fname, c.text) for c in got} == want
    assert not j.path.exists()
