"""QLoRA on the tiny model, for real on CPU: masking, augmentation, gradient correctness, training, resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from dialsum.config import MetricSpec
from dialsum.faults import StopAfter
from dialsum.models.loading import load_for_inference, load_model, load_tokenizer
from dialsum.models.prompts import IGNORE_INDEX, AUGMENT_INSTRUCTIONS, PromptStyle, encode_example
from dialsum.models.encoding import style_of
from dialsum.models.training import build_examples, train_model


@pytest.mark.parametrize("fmt", ["instruction", "chat"])
def test_labels_unmask_exactly_the_summary_plus_eos(fmt, tiny_cfg, sample_data):
    tok = load_tokenizer(tiny_cfg.path, tiny_cfg)
    d = sample_data.train[0]
    ex = encode_example(tok, d.dialogue, d.summary, PromptStyle(fmt, tiny_cfg.instruction, tiny_cfg.system_prompt), 384, 64,
                        [tok.eos_token_id])
    target = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != IGNORE_INDEX]
    assert tok.decode(target) == d.summary + tok.eos_token
    n_prompt = ex["labels"].index(next(l for l in ex["labels"] if l != IGNORE_INDEX))
    assert all(l == IGNORE_INDEX for l in ex["labels"][:n_prompt])
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]


def test_augmentation_multiplies_rows_by_five(tiny_cfg, sample_data):
    tok = load_tokenizer(tiny_cfg.path, tiny_cfg)
    rows = sample_data.train[:4]
    plain = build_examples(tok, rows, tiny_cfg, 0, [tok.eos_token_id])
    cfg = tiny_cfg.model_copy(update={"train": tiny_cfg.train.model_copy(update={"augment": "mixed"})})
    aug = build_examples(tok, rows, cfg, 0, [tok.eos_token_id])
    assert len(plain) == 4 and len(aug) == 4 * len(AUGMENT_INSTRUCTIONS) == 20
    decoded = [tok.decode(e["input_ids"]) for e in aug]
    for ins in AUGMENT_INSTRUCTIONS:
        assert sum(ins in t for t in decoded) == 4


def test_lora_gradients_after_eval_pass_equal_dequantised_fp32_reference(tiny_cfg, sample_data):
    """The bitsandbytes CPU bug: after an eval forward, 4-bit gradients went wrong. With the workaround they match."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit
    from peft import LoraConfig, get_peft_model

    tok = load_tokenizer(tiny_cfg.path, tiny_cfg)
    ex = encode_example(tok, sample_data.train[1].dialogue, sample_data.train[1].summary, style_of(tiny_cfg), 384, 64,
                        [tok.eos_token_id])
    batch = {k: torch.tensor([v]) for k, v in ex.items()}
    lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=tiny_cfg.target_modules, init_lora_weights=False)

    from dialsum.models.loading import fit_embeddings

    def base(quantization):  # as training loads it: rows for the tags the checkpoint's vocabulary lacks
        m = load_model(tiny_cfg.path, tiny_cfg, quantization=quantization)
        fit_embeddings(m, tok)
        return m

    torch.manual_seed(0)
    q = get_peft_model(base("4bit"), lcfg)
    q.eval()
    with torch.no_grad():
        q(**batch)  # the eval-mode forward that used to corrupt later gradients
    q.train()
    q(**batch).loss.backward()

    torch.manual_seed(0)
    ref = get_peft_model(base("none"), lcfg)
    # give the reference exactly the dequantised 4-bit weights
    qmods = dict(q.named_modules())
    with torch.no_grad():
        for name, mod in ref.named_modules():
            qm = qmods.get(name)
            if isinstance(qm, bnb.nn.Linear4bit):
                mod.weight.copy_(dequantize_4bit(qm.weight.data, qm.weight.quant_state).to(mod.weight.dtype))
        for (n1, p1), (n2, p2) in zip(q.named_parameters(), ref.named_parameters()):
            if "lora_" in n1:
                p2.copy_(p1)
    ref.train()
    ref(**batch).loss.backward()
    qg = {n: p.grad for n, p in q.named_parameters() if "lora_" in n}
    rg = {n: p.grad for n, p in ref.named_parameters() if "lora_" in n}
    assert qg.keys() == rg.keys() and qg
    for n in qg:
        rel = (qg[n] - rg[n]).norm() / (rg[n].norm() + 1e-12)
        assert rel < 1e-3, f"{n}: relative gradient error {rel:.2e}"


def _short(cfg, **train):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def test_qlora_training_loss_falls_scores_dev_and_saves_a_reloadable_best_adapter(tiny_cfg, sample_data, tmp_path):
    from peft import PeftModel

    cfg = _short(tiny_cfg, epochs=3, eval_steps=9, logging_steps=3, eval_subset=8, early_stopping_patience=None)
    r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec())
    assert r.losses[-1] < r.losses[0] * 0.8
    assert len(r.dev_history) == 3 and all(h["eval_dev_final"] > 0 for h in r.dev_history)
    assert r.best_dev_final == max(h["eval_dev_final"] for h in r.dev_history)
    saved = json.loads((tmp_path / "train_result.json").read_text())
    assert saved["global_step"] == 27
    # the adapter and every checkpoint hold LoRA and the tags' trained rows, never the two whole embedding matrices
    # PEFT adds by default once the vocabulary was resized for the tags (~4 GiB each for an 8B Llama-3)
    from safetensors.torch import load_file

    from dialsum.models.loading import load_for_inference
    from dialsum.models.special_tokens import TAGS

    for f in [r.weights_dir / "adapter_model.safetensors", *tmp_path.glob("checkpoints/*/adapter_model.safetensors")]:
        keys = load_file(str(f))
        assert not [k for k in keys if "base_layer" in k], f
        assert sum("trainable_tokens_delta" in k for k in keys) == 2, f  # input rows and the untied head's rows
    # reloaded as generation loads it, the tags' rows are the trained ones
    tok, model = load_for_inference(cfg, cfg.path, r.weights_dir)
    assert isinstance(model, PeftModel) and any("lora_A" in n for n, _ in model.named_parameters())
    merged = model.merge_and_unload()
    saved_rows = load_file(str(r.weights_dir / "adapter_model.safetensors"))
    ids = tok.convert_tokens_to_ids(TAGS)
    for layer, key in ((merged.get_input_embeddings(), "embed_tokens"), (merged.get_output_embeddings(), "lm_head")):
        [delta] = [v for k, v in saved_rows.items() if "trainable_tokens_delta" in k and key in k]
        assert layer.weight[ids].equal(delta)


def test_resume_after_kill_reaches_the_same_total_steps(tiny_cfg, sample_data, tmp_path):
    cfg = _short(tiny_cfg, max_steps=12, eval_steps=4, logging_steps=2, eval_subset=4, early_stopping_patience=None,
                 save_total_limit=5)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec(), callbacks=[StopAfter(4)])
    ckpt = tmp_path / "checkpoints" / "checkpoint-4"
    assert (ckpt / "optimizer.pt").exists() and (ckpt / "scheduler.pt").exists()
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # a kill during the next save: checkpoint-8 has its weights but not yet trainer_state.json (written last)
    half = tmp_path / "checkpoints" / "checkpoint-8"
    shutil.copytree(ckpt, half, ignore=shutil.ignore_patterns("trainer_state.json"))
    train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec(), resume=True)
    saved = json.loads((tmp_path / "train_result.json").read_text())
    assert saved["global_step"] == 12
    assert (saved["resumed_from_step"], saved["steps_this_process"]) == (4, 8)  # resumed at 4, not restarted
    final_state = json.loads((tmp_path / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    logged_steps = [h["step"] for h in final_state["log_history"] if "loss" in h]
    assert logged_steps == [2, 4, 6, 8, 10, 12]  # history carried over from before the kill, no step repeated


def _tiny_default(base_dir: str):
    """configs/models/tiny.yaml pointing at a built base, as the generate stage loads it."""
    from dialsum.config import load_model_config

    from conftest import ROOT

    return load_model_config(ROOT / "configs" / "models" / "tiny.yaml").model_copy(update={"path": base_dir,
                                                                                          "tiny": None})


def test_dialsum_train_cli_with_the_default_config(tmp_path, pipeline_seed):
    """The acceptance path: `dialsum train --config configs/default.yaml` (4-bit QLoRA on CPU, in a child process)."""
    import re

    from peft import PeftModel

    from conftest import run_cli
    from pipelines import seed_stages

    seed_stages(pipeline_seed, tmp_path, "build:tiny")  # the base model (its build: test_pipeline_faults)

    r = run_cli("train", "--config", "configs/default.yaml", "--model", "tiny", "--output-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = Path(re.search(r"^run: (.+)$", r.stdout, flags=re.M).group(1))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stage = manifest["stages"]["train:tiny"]
    result = json.loads((Path(stage["dir"]) / "train_result.json").read_text())
    assert result["losses"][-1] < result["losses"][0] * 0.7
    assert len(result["dev_history"]) >= 2 and all("eval_dev_final" in h for h in result["dev_history"])
    assert result["best_dev_final"] == max(h["eval_dev_final"] for h in result["dev_history"])
    assert stage["result"]["adapter"] == result["weights_dir"]
    base_dir = manifest["stages"]["build:tiny"]["result"]["path"]
    _, model = load_for_inference(_tiny_default(base_dir), base_dir, Path(result["weights_dir"]))
    assert isinstance(model, PeftModel) and any("lora_B" in n for n, _ in model.named_parameters())
    assert manifest["stages"]["train:tiny"]["status"] == "ran"


def test_torchrun_two_processes_train_the_configured_epochs_into_one_intact_adapter(tmp_path, pipeline_seed):
    """Data-parallel on CPU (gloo): the step count divides by the world size and only rank 0 writes the adapter."""
    import os
    import re
    import subprocess
    import sys

    from peft import PeftModel

    from conftest import ROOT
    from pipelines import seed_stages

    seed_stages(pipeline_seed, tmp_path, "build:tiny")  # the base model; the data-parallel training is the test
    torchrun = Path(sys.executable).with_name("torchrun")
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "dialsum", "train",
                        "--config", "configs/default.yaml", "--model", "tiny", "--output-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = Path(re.search(r"^run: (.+)$", r.stdout, flags=re.M).group(1))
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["train:tiny"]
    out = Path(stage["dir"])
    result = json.loads((out / "train_result.json").read_text())
    assert result["world_size"] == 2
    assert result["epoch"] == pytest.approx(6.0)  # tiny.yaml: epochs 6
    # 72 rows, batch 8 per rank, 2 ranks: 5 steps per epoch (not the 9 a single process takes)
    assert result["global_step"] == 30
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("adapter")) == ["adapter"]
    base_dir = json.loads((run_dir / "manifest.json").read_text())["stages"]["build:tiny"]["result"]["path"]
    _, model = load_for_inference(_tiny_default(base_dir), base_dir, out / "adapter")
    assert isinstance(model, PeftModel) and any("lora_B" in n for n, _ in model.named_parameters())


def test_lora_and_tag_rows_are_fp32_on_a_bf16_base(tiny_cfg, sample_data, tmp_path):
    """Point 4 of the real-checkpoint issue: only the frozen base is bf16; every trained parameter (LoRA matrices,
    the tags' trainable-token rows) is fp32."""
    from peft import LoraConfig, get_peft_model

    from dialsum.config import TinyModelSpec
    from dialsum.models.loading import fit_embeddings, trainable_token_rows
    from dialsum.models.tiny import build_tiny_model

    out = build_tiny_model(tmp_path / "m", sample_data.train[:20], TinyModelSpec(pretrain_steps=0, with_tags=False,
                                                                                  tie_word_embeddings=False))
    cfg = tiny_cfg.model_copy(update={"path": str(out), "precision": "bf16"})
    tok = load_tokenizer(str(out), cfg)
    model = load_model(str(out), cfg, quantization="none")
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    ids = fit_embeddings(model, tok)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=cfg.target_modules,
                                            trainable_token_indices=trainable_token_rows(model, ids)))
    trained = {n: p.dtype for n, p in peft.named_parameters() if p.requires_grad}
    assert any("trainable_tokens" in n for n in trained) and any("lora_A" in n for n in trained)
    assert set(trained.values()) == {torch.float32}
