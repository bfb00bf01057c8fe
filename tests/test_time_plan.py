"""The time plan of `dialsum train --dry-run --gpu CARD`: FLOPs checked by hand on the tiny model, the CLI's JSON, a
GPU rehearsal's measured utilisation used for its card only, and --hours."""
from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT, run_cli
from dialsum.cli_types import GPU_CARDS
from dialsum.config import DecodingSpec, GenerateSpec, load_config
from dialsum.models.time_plan import (CARDS, UTILISATION, card_for, card_of_name, generate_seconds, shape_of,
                                      train_flops_per_token, train_seconds)


def tiny_model(**train):
    m = load_config(ROOT / "configs" / "default.yaml").models[0]
    assert m.name == "tiny" and m.method == "qlora"
    return m.model_copy(update={"train": m.train.model_copy(update=train)})


def test_the_flops_of_a_training_token_are_the_hand_count_of_the_tiny_llama():
    """Hand count from the tiny spec: per layer q, k, v, o (h x h each: as many KV heads as heads) and gate, up, down
    (h x i each); the LM head V x h; LoRA r x (in + out) on each targeted Linear. A frozen base costs 2 FLOPs per
    weight forward and 2 backward; LoRA 6; attention 2 x L x h x context forward, twice that backward."""
    m = tiny_model(batch_size=1, grad_accum=1, epochs=2, gradient_checkpointing=False)
    t = m.tiny
    h, i, layers, r = t.hidden_size, t.intermediate_size, t.num_hidden_layers, m.lora.r
    vocab = t.vocab_size + 4  # the BPE's own specials (<s>, </s>, <pad>, <unk>); no tags: with_tags false
    base = layers * (4 * h * h + 3 * h * i) + vocab * h
    lora = layers * r * (4 * (h + h) + 2 * (h + i) + (i + h))
    shape = shape_of(m, GenerateSpec())
    assert (shape.output_weights, shape.trained, shape.layers, shape.width) == (base, lora, layers, h)

    context = 10.0
    attention = 2 * layers * h * context
    by_hand = 2 * (base + lora) + attention + 2 * (base + lora) + 2 * lora + 2 * attention
    assert train_flops_per_token(base, lora, layers, h, context, False) == pytest.approx(by_hand, rel=1e-12)
    assert train_flops_per_token(base, lora, layers, h, context, True) == pytest.approx(
        by_hand + 2 * (base + lora) + attention, rel=1e-12)  # checkpointing repeats the forward
    assert train_flops_per_token(0, base, layers, h, context, False) == pytest.approx(  # full fine-tuning: 6N
        6 * base + 3 * attention, rel=1e-12)

    # two rows of 10+5 and 20+5 tokens, batch 1 (no padding), 2 epochs: 4 steps over 80 tokens, mean context 10
    card = CARDS["rtx3090"]
    got = train_seconds(m, shape, card, [10, 20], [5, 5])
    assert (got["steps"], got["tokens"]) == (4, 80)
    assert got["flops"] == pytest.approx(80 * by_hand, rel=1e-12)
    assert got["seconds"] == pytest.approx(80 * by_hand / (35.6e12 * UTILISATION["qlora"]), rel=1e-12)


def test_a_decode_step_is_bound_by_bandwidth_or_compute_whichever_is_slower():
    m = tiny_model()
    shape = shape_of(m, GenerateSpec())
    card = CARDS["h100"]
    one = generate_seconds(m, shape, card, GenerateSpec(batch_size=1), "hf", [100], 20.0, DecodingSpec(name="g"))
    prefill = 100 * (2 * shape.input_weights + 2 * shape.layers * shape.width * 50) / (989e12 * 0.5)
    context = 100 + 20 / 2
    step_bytes = shape.weight_bytes + context * shape.kv_per_token
    step_flops = 2 * shape.output_weights + 2 * shape.layers * shape.width * context
    by_hand = prefill + 20 * max(step_bytes / (3350e9 * 0.6), step_flops / (989e12 * 0.5))
    assert one["seconds"] == pytest.approx(by_hand, rel=1e-12)
    assert step_bytes / (3350e9 * 0.6) > step_flops / (989e12 * 0.5)  # one sequence: memory-bound, as on a GPU


def test_dry_run_json_gives_hours_per_model_and_stage_and_a_total():
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml", "--gpu", "rtx3090", "--json",
                "--rows", "train=12457,dev=499,test=499", "--hours", "100")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["gpu"] == "rtx3090" and plan["utilisation_source"] == "assumed"
    assert plan["rows"] == {"train": 12457, "dev": 499, "test": 499}
    assert [m["name"] for m in plan["models"]] == ["solar-10.7b", "bllossom-8b", "qwen2.5-7b", "polyglot-ko-5.8b"]
    for m in plan["models"]:
        assert set(m["stages"]) == {"train", "devscore", "generate"}
        assert all(s["hours"] > 0 for s in m["stages"].values())
        assert m["hours"] == pytest.approx(sum(s["hours"] for s in m["stages"].values()))
        assert "tokens/char (model config tokens_per_char)" in m["tokens"]
        assert m["memory_gib"]["train"] > 5
    assert plan["hours"] == pytest.approx(sum(m["hours"] for m in plan["models"]))
    assert plan["fits"] is (plan["hours"] <= 100)
    # a larger model costs more per token: SOLAR (10.7B, 1.2 tokens/char) trains longer than polyglot (5.8B, 0.45)
    hours = {m["name"]: m["stages"]["train"]["hours"] for m in plan["models"]}
    assert hours["solar-10.7b"] > 3 * hours["polyglot-ko-5.8b"]
    # the same plan on an H100 is faster than on the 3090, each stage
    h100 = json.loads(run_cli("train", "--dry-run", "--config", "configs/competition.yaml", "--gpu", "h100",
                              "--json", "--rows", "train=12457").stdout)
    for a, b in zip(plan["models"], h100["models"]):
        assert b["stages"]["train"]["hours"] < a["stages"]["train"]["hours"] / 10


def test_a_rehearsal_measured_on_the_card_replaces_the_assumed_utilisation(tmp_path):
    """rehearsal.json's throughput for the rtx3090 at half the assumed QLoRA utilisation doubles the train hours
    there, is named in the output, and changes nothing on another card."""
    rehearsal = tmp_path / "rehearsal.json"
    rehearsal.write_text(json.dumps({"device": "NVIDIA GeForce RTX 3090", "stages": [], "throughput": {
        "card": "rtx3090", "device": "NVIDIA GeForce RTX 3090",
        "utilisation": {"qlora": UTILISATION["qlora"] / 2}}}))
    args = ("train", "--dry-run", "--config", "configs/competition.yaml", "--model", "polyglot-ko-5.8b", "--json")
    assumed = json.loads(run_cli(*args, "--gpu", "rtx3090").stdout)
    measured = json.loads(run_cli(*args, "--gpu", "rtx3090", "--rehearsal", str(rehearsal)).stdout)
    assert str(rehearsal) in measured["utilisation_source"]
    a, b = assumed["models"][0]["stages"], measured["models"][0]["stages"]
    assert b["train"]["hours"] == pytest.approx(2 * a["train"]["hours"], rel=1e-9)
    assert b["generate"]["hours"] == pytest.approx(a["generate"]["hours"], rel=1e-9)  # decode was not measured
    text = run_cli(*args[:-1], "--gpu", "rtx3090", "--rehearsal", str(rehearsal)).stdout
    assert "utilisation measured by the GPU rehearsal" in text and "qlora 0.15" in text
    other = json.loads(run_cli(*args, "--gpu", "h100", "--rehearsal", str(rehearsal)).stdout)
    assert other["utilisation_source"] == "assumed" and other["utilisation"]["qlora"] == UTILISATION["qlora"]

    rehearsal.write_text(json.dumps({"device": "CPU", "stages": []}))
    r = run_cli(*args, "--gpu", "rtx3090", "--rehearsal", str(rehearsal))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "throughput" in r.stderr


def test_hours_verdict_and_the_cards():
    r = run_cli("train", "--dry-run", "--config", "configs/default.yaml", "--gpu", "t4", "--hours", "0.000001")
    assert r.returncode == 0, r.stderr
    assert "does NOT fit --hours 1e-06" in r.stdout and "T4 16 GB" in r.stdout
    r = run_cli("train", "--dry-run", "--config", "configs/default.yaml", "--gpu", "t4", "--hours", "1")
    assert "fits --hours 1" in r.stdout and "NOT" not in r.stdout.split("run total")[-1]
    assert tuple(CARDS) == GPU_CARDS
    assert card_of_name("NVIDIA A100-SXM4-80GB") == "a100-80" and card_of_name("NVIDIA A100-PCIE-40GB") == "a100-40"
    assert card_of_name("NVIDIA H100 80GB HBM3") == "h100" and card_of_name("NVIDIA GeForce RTX 3090") == "rtx3090"
    assert card_of_name("Tesla T4") == "t4" and card_of_name("NVIDIA L4") == "l4" and card_of_name(None) is None
    assert card_for(None).key == "rtx3090"  # no GPU here: the competition's card
    bad = run_cli("train", "--dry-run", "--config", "configs/default.yaml", "--rows", "train=0")
    assert bad.returncode == 2 and "SPLIT=N" in bad.stderr
    assert math.isfinite(CARDS["l4"].tflops)


def test_the_final_refit_is_planned_when_configured():
    """final.refit adds a `refit` row: the configured steps scaled by (train + dev) / train, plus its test candidates;
    pseudo-labels add the test rows and the dev-report probe."""
    args = ("train", "--dry-run", "--config", "configs/competition.yaml", "--model", "polyglot-ko-5.8b", "--json",
            "--gpu", "a100-80", "--rows", "train=1000,dev=500,test=500")
    plain = json.loads(run_cli(*args).stdout)["models"][0]["stages"]
    refit = json.loads(run_cli(*args, "--set", "final.refit=true").stdout)["models"][0]["stages"]
    pseudo = json.loads(run_cli(*args, "--set", "final.refit=true", "--set",
                                "final.pseudo_label=true").stdout)["models"][0]["stages"]
    assert "refit" not in plain and set(refit) == set(plain) | {"refit"}
    test_gen = plain["generate"]["hours"] / 2  # the refit generates test only: half the (dev + test) rows here
    assert refit["refit"]["hours"] == pytest.approx(1.5 * plain["train"]["hours"] + test_gen, rel=0.05)
    assert pseudo["refit"]["hours"] > refit["refit"]["hours"] + plain["train"]["hours"] / 2
