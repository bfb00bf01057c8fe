"""Phase 3 alignment: preference data from the model's own samples, DPO / GRPO (TRL) / BRIO ranking, each measured on
CPU with the tiny models, and the metric as reward checked against `dialsum score`."""
from __future__ import annotations

import csv
import itertools
import json
import random

import pytest

from conftest import run_cli
from dialsum.align.preferences import (Ranked, align_rows, check_train_only, dpo_pairs, rank_samples,
                                       ranking_groups, split_heldout)
from dialsum.config import AlignSpec, MetricSpec
from dialsum.errors import DialsumError

METRIC = {"semantics": "pltrdy", "tokenizer": "mecab"}


# ---------------------------------------------------------------- pure parts
def test_rank_samples_orders_by_score_dedups_and_shares_ranks_on_ties():
    rows = rank_samples("f", ["a", "b", "a", "c", "", "d"], [10.0, 30.0, 99.0, 30.0, 50.0, 5.0])
    assert [(r.candidate, r.score, r.rank) for r in rows] == [("b", 30.0, 1), ("c", 30.0, 1), ("a", 10.0, 3),
                                                              ("d", 5.0, 4)]  # first "a" kept, empty dropped


def test_dpo_pairs_need_the_margin_and_pair_the_best_with_the_worst():
    rows = rank_samples("f", ["a", "b", "c"], [40.0, 39.5, 20.0]) + rank_samples("g", ["x", "y"], [20.0, 19.5])
    assert dpo_pairs(rows, 1.0, 2) == [("f", "a", "c", 20.0), ("f", "b", "c", 19.5)]
    assert dpo_pairs(rows, 1.0, 1) == [("f", "a", "c", 20.0)]
    assert dpo_pairs(rows, 0.5, 1) == [("f", "a", "c", 20.0), ("g", "x", "y", 0.5)]
    assert list(ranking_groups(rows, 1.0)) == ["f"]


def test_heldout_split_is_seeded_disjoint_and_never_empty_or_everything():
    names = [f"train_{i}" for i in range(10)]
    fit, held = split_heldout(names, 0.25, 3)
    assert (fit, held) == split_heldout(list(reversed(names)), 0.25, 3)
    assert not set(fit) & set(held) and set(fit) | set(held) == set(names) and len(held) == 2
    assert len(split_heldout(names[:2], 0.01, 0)[1]) == 1 and len(split_heldout(names[:2], 0.99, 0)[0]) == 1


def test_align_rows_are_a_seeded_sample_of_train_in_train_order(sample_data):
    rows = align_rows(sample_data.train, 10, 7)
    order = [d.fname for d in sample_data.train]
    assert len(rows) == 10 and [d.fname for d in rows] == sorted((d.fname for d in rows), key=order.index)
    assert rows == align_rows(sample_data.train, 10, 7) and rows != align_rows(sample_data.train, 10, 8)


def test_a_preference_table_naming_a_dev_fname_is_refused(sample_data, tmp_path):
    rows = [Ranked(sample_data.train[0].fname, "x", 1.0, 1), Ranked(sample_data.dev[0].fname, "y", 0.0, 2)]
    with pytest.raises(DialsumError, match="outside train"):
        check_train_only(rows, {d.fname for d in sample_data.train}, tmp_path / "p.csv")


def test_ranking_loss_equals_the_pairwise_hinge_written_out():
    import torch

    from dialsum.align.rank import ranking_loss

    scores = torch.tensor([-1.0, -0.5, -2.0, -0.2, -3.0, -1.0, -1.1])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    rank = torch.tensor([0, 1, 2, 2, 0, 1, 3])  # 0 = the reference row (not ranked)
    is_ref = rank == 0
    margin = 0.1
    hinges = []
    cands = [(g, r, s) for g, r, s, ref in zip(group.tolist(), rank.tolist(), scores.tolist(), is_ref.tolist())
             if not ref]
    for (g1, r1, s1), (g2, r2, s2) in itertools.permutations(cands, 2):
        if g1 == g2 and r1 < r2:
            hinges.append(max(0.0, s2 - s1 + (r2 - r1) * margin))
    got = ranking_loss(scores, group, rank, is_ref, margin)
    assert got.item() == pytest.approx(sum(hinges) / len(hinges), abs=1e-6)


# ---------------------------------------------------------------- training, on the tiny models
def _sft(cfg, data, out):
    from dialsum.models.training import train_model

    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={
        "epochs": 3, "eval_steps": 27, "logging_steps": 9, "eval_subset": 4, "early_stopping_patience": None})})
    return cfg, train_model(cfg, cfg.path, data.train, data.dev, out, MetricSpec()).weights_dir


@pytest.fixture(scope="module")
def sft_decoder(tiny_cfg, sample_data, tmp_path_factory):
    return _sft(tiny_cfg, sample_data, tmp_path_factory.mktemp("sft-dec"))


@pytest.fixture(scope="module")
def sft_bart(tiny_bart_cfg, sample_data, tmp_path_factory):
    return _sft(tiny_bart_cfg, sample_data, tmp_path_factory.mktemp("sft-bart"))


def _aligned(sft, data, spec: AlignSpec, tmp_path):
    """The model's own ranked samples (through the prefs code path), then align_model, as the two stages run them."""
    from dialsum.align.run import align_model
    from dialsum.align.sampling import sample_preferences
    from dialsum.config import GenerateSpec

    cfg, weights = sft
    cfg = cfg.model_copy(update={"align": spec})
    rows = align_rows(data.train, spec.rows, spec.seed)
    prefs = sample_preferences(cfg, cfg.path, weights, rows, spec, GenerateSpec(), tmp_path / "store", METRIC)
    return align_model(cfg, cfg.path, weights, rows, data.dev[:4], data.dev[4:8], prefs, tmp_path / "a", METRIC)


def _reference_prefs(rows) -> list[Ranked]:
    """Preferences without sampling: each dialogue's own reference over another's (both full of tags)."""
    return [r for d, other in zip(rows, rows[1:] + rows[:1])
            for r in (Ranked(d.fname, d.summary, 60.0, 1), Ranked(d.fname, other.summary, 10.0, 2))]


def _sft_tag_rows_trained(policy, sft_weights) -> None:
    """The SFT adapter holds trained tag rows (in the embeddings and the untied head), else a test of them proves
    nothing."""
    from safetensors.torch import load_file

    saved = load_file(str(sft_weights / "adapter_model.safetensors"))
    deltas = [k for k in saved if "trainable_tokens_delta" in k]
    assert {"embed_tokens" in k for k in deltas} == {True, False}, deltas  # input rows and the head's rows
    for name, module in policy.named_modules():
        if hasattr(module, "trainable_tokens_original") and "default" in module.trainable_tokens_original:
            assert not module.trainable_tokens_delta["default"].detach().cpu().equal(
                module.trainable_tokens_original["default"].cpu()), name


def test_dpo_reference_holds_the_sft_tag_rows_and_the_adapter_stays_fp32(sft_decoder, sample_data, tmp_path):
    """On a tag-less checkpoint, TRL's frozen `ref` adapter must be the SFT policy including its trained tag rows:
    before any step the implicit reward margin on pairs full of tags is 0. (TRL 1.16 copies only parameters named
    `.default.`, which PEFT's `trainable_tokens_delta.default` is not: the margin was far from 0.) TRL also casts a
    k-bit policy's trainable parameters to bf16; dialsum keeps them fp32 as SFT trained them."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from dialsum.align import dpo
    from dialsum.align.policy import load_policy

    cfg, weights = sft_decoder
    spec = AlignSpec(method="dpo", steps=1, batch_size=4, save_steps=1)
    cfg = cfg.model_copy(update={"align": spec})
    tokenizer, model, stops = load_policy(cfg, cfg.path, weights)
    _sft_tag_rows_trained(model, weights)
    rows = [d for d in sample_data.train if "#Person" in d.summary][:12]
    pairs = dpo_pairs(_reference_prefs(rows), 1.0, 1)
    ds = dpo.pair_dataset(tokenizer, cfg, {d.fname: d for d in rows}, pairs, stops)
    trainer = dpo.make_trainer(model, tokenizer, cfg, spec, ds, ds, tmp_path / "ck", [])
    assert getattr(trainer.model, "is_loaded_in_4bit", False) or getattr(
        trainer.model.get_base_model(), "is_loaded_in_4bit", False)  # the k-bit path TRL casts on
    trained = {n: p.dtype for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and set(trained.values()) == {torch.float32}, trained
    sft = load_file(str(weights / "adapter_model.safetensors"))
    for adapter in ("default", "ref"):  # the policy and its reference are the SFT weights to the last bit
        state = get_peft_model_state_dict(trainer.model, adapter_name=adapter)
        assert all(state[k].equal(v) for k, v in sft.items()), adapter
    assert abs(dpo.heldout_margin(trainer, ds)["margin"]) < 1e-4


def test_grpo_kl_to_the_reference_is_zero_at_the_first_step(sft_decoder, sample_data, tmp_path):
    """GRPO with beta > 0: the first step's KL between the policy and TRL's `ref` copy is 0 (both are SFT), tag
    tokens included."""
    from dialsum.align import grpo
    from dialsum.align.policy import load_policy
    from dialsum.align.reward import MetricReward

    cfg, weights = sft_decoder
    spec = AlignSpec(method="grpo", samples=4, steps=1, batch_size=2, beta=0.1, save_steps=1, learning_rate=1e-3)
    cfg = cfg.model_copy(update={"align": spec, "max_new_tokens": 24})
    tokenizer, model, stops = load_policy(cfg, cfg.path, weights)
    reward = MetricReward(tokenizer, METRIC, 0.0)
    trainer = grpo.make_trainer(model, tokenizer, cfg, spec, sample_data.train[:2], reward, stops, tmp_path / "ck", [])
    trainer.train()
    [kl] = [h["kl"] for h in trainer.state.log_history if "kl" in h]
    assert abs(kl) < 1e-4, kl


class _WeightsAtStart:
    """A TrainerCallback recording the policy's (`default`) and the reference's (`ref`) adapter tensors when training
    begins, i.e. right after a resume has loaded its checkpoint."""

    def __new__(cls, seen: dict):
        from peft import get_peft_model_state_dict
        from transformers import TrainerCallback

        class At(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                for name in model.peft_config:
                    seen[name] = {k: v.detach().cpu().clone()
                                  for k, v in get_peft_model_state_dict(model, adapter_name=name,
                                                                        save_embedding_layers=False).items()}
        return At()


@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_a_killed_align_stage_resumes_with_the_checkpoints_policy(method, sft_decoder, sample_data, tmp_path):
    """Killed after checkpoint 2, the align stage resumes with checkpoint 2's policy weights, tensor by tensor, and
    the SFT policy as its reference (transformers loads only a checkpoint's sub-folder adapters, TRL's `ref/`, when
    it has one: the policy restarted from SFT with step, optimizer and scheduler restored)."""
    from safetensors.torch import load_file

    from dialsum.align.run import align_model
    from dialsum.faults import StopAfter

    cfg, weights = sft_decoder
    rows = sample_data.train[:10]
    if method == "dpo":
        spec, prefs = AlignSpec(method="dpo", steps=4, save_steps=2, batch_size=2, learning_rate=1e-3, heldout=0.2,
                                eval_rows=2), _reference_prefs(rows)
    else:
        spec, prefs = AlignSpec(method="grpo", samples=2, steps=4, save_steps=2, batch_size=2, beta=0.1,
                                learning_rate=1e-3, heldout=0.2, eval_rows=2), None
    cfg = cfg.model_copy(update={"align": spec, "max_new_tokens": 24})
    out = tmp_path / "a"
    with pytest.raises(KeyboardInterrupt):
        align_model(cfg, cfg.path, weights, rows, sample_data.dev[:2], sample_data.dev[2:4], prefs, out, METRIC,
                    callbacks=[StopAfter(2)])
    ckpt = out / "checkpoints" / "checkpoint-2"
    policy_at_2 = load_file(str(ckpt / "adapter_model.safetensors"))
    sft = load_file(str(weights / "adapter_model.safetensors"))
    assert any(not policy_at_2[k].equal(sft[k]) for k in sft)  # two steps moved the policy: the test can tell
    seen: dict = {}
    r = align_model(cfg, cfg.path, weights, rows, sample_data.dev[:2], sample_data.dev[2:4], prefs, out, METRIC,
                    callbacks=[_WeightsAtStart(seen)])
    assert r["steps"] == 4
    assert set(seen["default"]) == set(policy_at_2)
    for k, v in policy_at_2.items():
        assert seen["default"][k].equal(v), k
    for k, v in sft.items():  # the reference is still the SFT policy, tag rows included
        assert seen["ref"][k].equal(v), k


def test_rank_loss_is_not_multiplied_by_gradient_accumulation(sft_decoder, sample_data, tmp_path):
    """BRIO's loss is a per-micro-batch mean; under gradient accumulation G the logged loss of the first step is the
    mean of its G micro-batches' losses (it was their sum: G times too large, and so was every gradient)."""
    import torch

    from dialsum.align import rank
    from dialsum.align.policy import load_policy

    cfg, weights = sft_decoder
    spec = AlignSpec(method="rank", steps=1, batch_size=1, grad_accum=4, save_steps=1, learning_rate=1e-3,
                     rank_margin=0.01)
    cfg = cfg.model_copy(update={"align": spec})
    tokenizer, model, stops = load_policy(cfg, cfg.path, weights)
    rows = sample_data.train[:4]
    groups = {d.fname: rank_samples(d.fname, [d.summary, o.summary, o.summary[:20]], [50.0, 20.0, 5.0])
              for d, o in zip(rows, rows[1:] + rows[:1])}
    examples = rank.group_examples(tokenizer, cfg, {d.fname: d for d in rows}, groups, stops)
    trainer = rank.make_trainer(model, tokenizer, cfg, spec, examples, tmp_path / "ck", [])
    model.train()
    with torch.no_grad():
        direct = []
        for ex in examples:
            batch = trainer.data_collator([ex])
            direct.append(float(rank.brio_loss(model, batch, spec, False)[0]))
    trainer.train_dataset = examples  # the Trainer's sampler visits them in its own order; the mean does not care
    trainer.train()
    [logged] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged == pytest.approx(sum(direct) / len(direct), rel=1e-3), (logged, direct)


def test_a_dpo_sample_cut_at_the_length_limit_gets_no_end_token(sft_decoder, sample_data):
    """A sample generation cut at max_new_tokens never wrote an end token; DPO scores it as it was generated. A
    finished one ends with the end token SFT trained."""
    from dialsum.align import dpo
    from dialsum.align.policy import load_policy

    cfg, weights = sft_decoder
    cfg = cfg.model_copy(update={"max_new_tokens": 16})
    tokenizer, _, stops = load_policy(cfg, cfg.path, weights)
    d = sample_data.train[0]
    long_text = " ".join(x.summary for x in sample_data.train[:6])
    enc = dpo.encode_pair(tokenizer, cfg, d, "#Person1#가 웃는다.", long_text, stops)
    assert enc["chosen_ids"][-1] in stops and len(enc["chosen_ids"]) < 16
    assert len(enc["rejected_ids"]) == 16 and enc["rejected_ids"][-1] not in stops
    assert enc["rejected_ids"] == tokenizer(long_text, add_special_tokens=False)["input_ids"][:16]


def test_dpo_raises_the_implicit_reward_margin_on_heldout_pairs(sft_decoder, sample_data, tmp_path):
    """The implicit reward margin rises on pairs of held-out dialogues. Stated per seed (`align.seed`: which rows are
    aligned and held out, and the samples), one torch thread, on the tag-less untied stand-in: seeds 0-5 gave
    +0.97, +0.04, +0.22, +1.72, +0.72, +1.19 — a rise for every seed; this test runs seed 0. (Before TRL's reference
    got the SFT tag rows, on pre-tagged models, seeds 0-3 gave +0.23, -0.21, +0.27, -0.40.)"""
    r = _aligned(sft_decoder, sample_data, AlignSpec(method="dpo", rows=48, samples=4, steps=16, batch_size=4,
                                                     learning_rate=3e-3, beta=0.1, heldout=0.3, eval_rows=4,
                                                     save_steps=16), tmp_path)
    assert r["heldout_pairs"] >= 5 and r["pairs"] >= 20
    before, after = r["heldout"]["before"], r["heldout"]["after"]
    assert abs(before["margin"]) < 1e-4  # the SFT policy is its own reference, tag rows included
    assert after["margin"] > before["margin"] + 0.02
    assert [c["step"] for c in r["curve"] if "reward_margin" in c] == list(range(1, 17))
    saved = json.loads((tmp_path / "a" / "align_result.json").read_text())
    from dialsum.align.run import keep_aligned

    assert saved["kept"] == keep_aligned(saved["sft"]["select"]["per_dialogue"],
                                         saved["aligned"]["select"]["per_dialogue"]).keep
    if saved["kept"]:  # only the policy adapter is saved, never TRL's frozen `ref` copy
        assert (tmp_path / "a" / "adapter" / "adapter_config.json").is_file()
        assert not (tmp_path / "a" / "adapter" / "ref").exists()


def test_grpo_raises_the_mean_reward_and_every_reward_is_dialsum_score(sft_decoder, sample_data, tmp_path):
    from dialsum.align.run import align_model

    cfg, weights = sft_decoder
    # every step samples 16 completions for each of the same 3 train dialogues (the 4th is held out), so the mean
    # reward of a step compares like with like across steps
    spec = AlignSpec(method="grpo", rows=4, samples=16, steps=20, batch_size=3, learning_rate=5e-3, beta=0.0,
                     heldout=0.25, eval_rows=2, save_steps=20)
    cfg = cfg.model_copy(update={"align": spec, "max_new_tokens": 32})
    rows = align_rows(sample_data.train, spec.rows, spec.seed)
    r = align_model(cfg, cfg.path, weights, rows, sample_data.dev[:2], sample_data.dev[2:4], None, tmp_path / "g",
                    METRIC)
    rewards = [c["reward"] for c in r["curve"] if "reward" in c]
    assert len(rewards) == 20
    k = len(rewards) // 5
    assert sum(rewards[-k:]) / k > sum(rewards[:k]) / k
    # each logged reward is exactly what `dialsum score` prints for that completion against that reference
    with open(tmp_path / "g" / "rewards.csv", newline="", encoding="utf-8") as f:
        logged = list(csv.DictReader(f))
    assert len(logged) == 20 * 3 * 16
    refs = {d.fname: d.summary for d in sample_data.train}
    held = set(split_heldout([d.fname for d in rows], spec.heldout, spec.seed)[1])
    assert {x["fname"] for x in logged} <= {d.fname for d in rows} - held  # train rows only, held-out ones unseen
    for x in random.Random(0).sample(logged, 3):
        assert float(x["reward"]) == _dialsum_score(x["fname"], x["completion"], refs[x["fname"]], tmp_path)


def test_rank_lowers_the_ranking_loss_on_heldout_dialogues_for_seq2seq(sft_bart, sample_data, tmp_path):
    r = _aligned(sft_bart, sample_data, AlignSpec(method="rank", rows=40, samples=4, steps=12, batch_size=4,
                                                  learning_rate=1e-3, heldout=0.3, rank_margin=0.01, eval_rows=4,
                                                  save_steps=12), tmp_path)
    assert r["heldout_groups"] >= 5
    before, after = r["heldout"]["before"], r["heldout"]["after"]
    assert after["ranking_loss"] < before["ranking_loss"]
    assert all("ranking_loss" in c and "mle_loss" in c for c in r["curve"] if "loss" in c)


def _dialsum_score(fname: str, text: str, ref: str, tmp_path) -> float:
    pred, refs = tmp_path / "pred.csv", tmp_path / "refs.csv"
    for path, col, value in ((pred, "summary", text), (refs, "summary", ref)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["fname", col], [fname, value]])
    out = run_cli("score", "--pred", str(pred), "--refs", str(refs), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["final"]


def test_dry_run_plans_align_memory_for_a_real_checkpoint_named_with_a_dot():
    """`--set models.<name>...` reaches a model whose name holds dots; the plan gains the align stage's memory."""
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml",
                "--set", "models.solar-10.7b.align.method=dpo", "--set", "models.qwen2.5-7b.align.method=rank")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip().startswith(("train:", "align:"))}
    assert "align:solar-10.7b" in lines and "align:qwen2.5-7b" in lines and "align:bllossom-8b" not in lines
    gib = lambda ln: float(ln.split()[1])  # noqa: E731
    assert gib(lines["align:solar-10.7b"]) > gib(lines["train:solar-10.7b"])  # a second adapter, 2 sequences a pair
    assert "dpo: 8 sequences per step" in lines["align:solar-10.7b"]
    r = run_cli("train", "--dry-run", "--config", "configs/competition.yaml", "--set", "models.solar-10.align.r=8")
    assert r.returncode == 2 and "no model named 'solar-10'" in r.stderr


def test_dpo_on_a_seq2seq_model_is_refused_in_one_line(tmp_path):
    r = run_cli("train", "--dry-run", "--config", "configs/default.yaml", "--set", "models.tiny-bart.align.method=dpo")
    assert r.returncode == 2 and "use `rank` for seq2seq" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_trl_vllm_for_grpo_is_refused_by_config_validation_in_one_line():
    """TRL 1.16 would ask the pinned vLLM for a bitsandbytes 4-bit model (gone from vLLM 0.33) after dev scoring had
    run: refused before anything runs."""
    r = run_cli("train", "--dry-run", "--config", "configs/align.yaml", "--set", "models.tiny-chat.align.use_vllm=true")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "use_vllm" in errors[0] and "bitsandbytes" in errors[0], r.stderr


def test_aligned_weights_are_kept_only_beyond_one_standard_error():
    """The keep decision is dialsum's rule for every choice: a per-row gain on dev-select within one standard error is
    noise (SFT stays), a clear one is kept; no gain is never kept (the old rule kept any aligned > SFT)."""
    import numpy as np

    from dialsum.align.run import keep_aligned

    sft = np.random.default_rng(0).uniform(20, 60, 40)
    swing = np.where(np.arange(40) % 2, 6.0, -6.0)
    noise = sft + 0.5 + swing  # higher on average (+0.5), but one SE of that gain is ~0.96
    assert noise.mean() > sft.mean() and not keep_aligned(list(sft), list(noise)).keep
    clear = sft + 3.0 + swing / 12  # +3 +- 0.5
    d = keep_aligned(list(sft), list(clear))
    assert d.keep and d.gain > d.se == pytest.approx(np.std(clear - sft, ddof=1) / np.sqrt(40))
    assert not keep_aligned(list(sft), list(sft)).keep
