"""Candidate generation (transformers backend) and the resumable, chunk-journaled candidate store."""
from __future__ import annotations

import json

import pytest

from dialsum.io.candidates import Journal, part_path, read_part
from dialsum.config import DecodingSpec, GenerateSpec
from dialsum.models.generation import generate_candidates


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
    # the n samples of a dialogue are n draws (not n copies of one), and another seed draws others
    draws = {}
    for c in got["s"]:
        draws.setdefault(c.fname, []).append(c.text)
    assert sum(len(set(v)) > 1 for v in draws.values()) >= len(draws) // 2, draws
    other = _cfg(tiny_cfg, [DecodingSpec(name="s", strategy="sample", n=3, temperature=0.8, seed=8)])
    (reseeded,) = generate_candidates(other, cfg.path, None, rows, tmp_path / "c", GenerateSpec(batch_size=3))
    assert [c.text for c in read_part(reseeded)] != [c.text for c in got["s"]]


def _kill_after_first_chunk(store, name, decoding, full_cands, chunk_rows, n):
    """What a kill leaves: chunk 0 journaled whole, chunk 1 torn mid-line (some of its samples written). Chunk 0's
    texts carry a sentinel, so a resume that regenerated it instead of reusing the journal would show."""
    from dataclasses import replace

    j = Journal(part_path(store, name, decoding))
    j.append(0, [replace(c, text=f"journaled {c.text}") for c in full_cands[: chunk_rows * n]])
    rec = {"chunk": 1, "count": chunk_rows * n,
           "candidates": [c.__dict__ for c in full_cands[chunk_rows * n: chunk_rows * n + n + 1]]}
    with open(j.path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, ensure_ascii=False)[:-40])  # torn: the kill came mid-write
    return j


def test_sampling_resume_after_a_kill_mid_chunk_equals_an_uninterrupted_run(tiny_cfg, sample_data, tmp_path):
    """n > 1: a dialogue whose samples were half written is regenerated whole, with the same seeds."""
    cfg = _cfg(tiny_cfg, [DecodingSpec(name="s", strategy="sample", n=3, temperature=0.9, seed=5)])
    rows = {"dev": sample_data.dev[:6], "test": sample_data.test[:2]}
    (ref,) = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "ref", GenerateSpec(batch_size=2), chunk=3)
    want = read_part(ref)
    assert len(want) == 8 * 3
    store = tmp_path / "store"
    j = _kill_after_first_chunk(store, cfg.name, "s", want, 3, 3)
    assert set(j.load()) == {0}  # the torn chunk does not count as done
    (path,) = generate_candidates(cfg, cfg.path, None, rows, store, GenerateSpec(batch_size=2), chunk=3)
    got = read_part(path)
    reused = [f"journaled {c.text}" for c in want[:9]]  # chunk 0 (3 dialogues x 3 samples) read from the journal
    assert [(c.fname, c.sample_idx, c.text) for c in got] == [
        (c.fname, c.sample_idx, t) for c, t in zip(want, reused + [c.text for c in want[9:]])]
    assert not j.path.exists()


def test_a_chunk_line_with_missing_candidates_is_redone(tiny_cfg, sample_data, tmp_path):
    cfg = _cfg(tiny_cfg, [DecodingSpec(name="greedy")])
    rows = {"dev": sample_data.dev[:4]}
    (ref,) = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "ref", GenerateSpec(), chunk=2)
    want = read_part(ref)
    j = Journal(part_path(tmp_path / "s", cfg.name, "greedy"))
    from dataclasses import replace

    j.append(0, [replace(c, text=f"journaled {c.text}") for c in want[:2]])  # the sentinel shows it was reused
    want = [replace(c, text=f"journaled {c.text}") for c in want[:2]] + want[2:]
    with open(j.path, "a", encoding="utf-8") as f:  # a foreign/short record: count says 2, one candidate
        f.write(json.dumps({"chunk": 1, "count": 2, "candidates": [want[2].__dict__]}, ensure_ascii=False) + "\n")
    assert set(j.load()) == {0}
    (path,) = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "s", GenerateSpec(), chunk=2)
    assert [(c.fname, c.text) for c in read_part(path)] == [(c.fname, c.text) for c in want]


def test_logprob_is_the_teacher_forced_sum_through_the_stop_token(tiny_cfg, sample_data):
    """In a sampled batch whose sequences end at different steps, each log-probability counts the sequence's own
    tokens up to and including its stop token, and none of the padding added after it (checked by a forward pass)."""
    import torch

    from dialsum.models.hf_backend import _logprobs, stop_token_ids
    from dialsum.models.loading import load_for_inference
    from dialsum.models.encoding import encode_input

    tok, model = load_for_inference(tiny_cfg, tiny_cfg.path, None, quantization="4bit")  # as QLoRA's base
    model.eval()
    prompts = [encode_input(tok, r.dialogue, tiny_cfg) for r in sample_data.dev[:4]]
    stops = stop_token_ids(model, tok)
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding, as generate_hf does for decoder-only models
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    torch.manual_seed(3)
    spec = DecodingSpec(name="s", strategy="sample", n=3, temperature=1.0, top_p=1.0)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=None, num_return_sequences=3, eos_token_id=stops,
                             pad_token_id=tok.pad_token_id, return_dict_in_generate=True, output_scores=True)
    new = out.sequences[:, width:]
    got = _logprobs(model, out, spec, new, stops)
    lengths = set()
    for row, lp in enumerate(got):
        gen = new[row].tolist()
        gen = gen[: next((k + 1 for k, t in enumerate(gen) if t in stops), len(gen))]  # through the stop token
        lengths.add(len(gen))
        prompt = prompts[row // 3]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + gen])).logits[0, len(prompt) - 1:-1]
        want = float(torch.log_softmax(logits.float(), -1)[torch.arange(len(gen)), torch.tensor(gen)].sum())
        assert lp == pytest.approx(want, abs=2e-3), (row, lp, want)
    assert len(lengths) > 1  # the batch really mixed lengths, so padding followed the shorter sequences


def test_4bit_generation_runs_the_base_through_bitsandbytes_on_cpu(tiny_cfg, sample_data, tmp_path):
    """generate.quantization 4bit: the transformers backend loads the base's Linear layers as bitsandbytes 4-bit
    (embeddings and LM head stay in the compute dtype) and generates every candidate; `auto` means hf at 4 bits."""
    import bitsandbytes as bnb
    import torch

    from dialsum.models.generation import HFEngine, resolve_backend

    engine = HFEngine(tiny_cfg, tiny_cfg.path, None, 4, quantization="4bit")
    kinds = {type(m) for m in engine.model.modules()}
    assert bnb.nn.Linear4bit in kinds and engine.model.get_input_embeddings().weight.dtype == torch.float32
    assert not isinstance(engine.model.get_output_embeddings(), bnb.nn.Linear4bit)
    engine.close()
    assert resolve_backend("auto", "4bit") == "hf"
    cfg = _cfg(tiny_cfg, [DecodingSpec(name="greedy"), DecodingSpec(name="s", strategy="sample", n=2, seed=3)])
    rows = {"dev": sample_data.dev[:4], "test": sample_data.test[:3]}
    paths = generate_candidates(cfg, cfg.path, None, rows, tmp_path / "q",
                                GenerateSpec(batch_size=3, quantization="4bit", backend="auto"))
    got = {p.stem.split("__")[1]: read_part(p) for p in paths}
    assert {k: len(v) for k, v in got.items()} == {"greedy": 7, "s": 14}
    assert all(c.text.strip() for v in got.values() for c in v)


def test_control_characters_a_model_emits_never_reach_a_candidate(tiny_cfg, tmp_path):
    """A byte-level vocabulary has a token for NUL and every other control byte, and a model can emit one (the tiny
    DPO sampling did): decoding, the one path every backend and the GRPO reward take, drops them (tab and newline
    stay), so the candidate CSV reads back."""
    from dialsum.io.candidates import Candidate, write_part
    from dialsum.models.loading import load_tokenizer
    from dialsum.models.special_tokens import decode_summary

    tok = load_tokenizer(tiny_cfg.path, tiny_cfg)
    raw = "#Person1#가\x00 요약\x07을\t했다\x1b.\r\n끝\r맺음\x7f"
    ids = tok(raw, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == raw  # the tokenizer really does carry those bytes through
    text = decode_summary(tok, ids)
    assert text == "#Person1#가 요약을\t했다.\n끝\n맺음"
    write_part(tmp_path / "p.csv", [Candidate(fname="dev_0", split="dev", text=text, model="m", decoding="greedy")])
    assert [c.text for c in read_part(tmp_path / "p.csv")] == [text]
