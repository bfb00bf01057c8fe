"""Seq2seq models (KoBART, T5, mBART) next to the LLMs: the competition's tags as atomic tokens that survive decoding
in every tokenizer class the configs use, and the tiny BART trained for real on CPU: loss falls, it beats its
untrained self, it resumes after a kill."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from dialsum.config import MetricSpec, load_model_config
from dialsum.faults import StopAfter
from dialsum.models.special_tokens import TAGS, decode_summary, ensure_tags

MODEL_FILES = sorted((ROOT / "configs" / "models").glob("*.yaml"))
TOKENIZER_CLASS = {"llama": "LlamaTokenizerFast", "qwen2": "Qwen2TokenizerFast", "gpt_neox": "GPTNeoXTokenizerFast",
                   "gptj": "GPT2TokenizerFast", "exaone4": "GPT2TokenizerFast", "bart": "PreTrainedTokenizerFast",
                   "t5": "T5TokenizerFast", "mbart": "MBart50TokenizerFast"}
ARCH = {"bart": dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64),
        "mbart": dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64),
        "t5": dict(d_model=64, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2),
        "gptj": dict(n_layer=1, n_embd=64, n_head=2, rotary_dim=16),
        "gpt_neox": dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=2)}
DEFAULT_ARCH = dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=2,
                    num_key_value_heads=2)
TEXT = "#Person1#은 #Person2#에게 #PhoneNumber#로 전화하라고 합니다. #Person3#는 #Email#을 남깁니다."


def local_tokenizer(cls_name: str, texts: list[str], tags_special: bool):
    """A tokenizer of the given class built here (no download): byte-level BPE trained on the sample dialogues,
    optionally with the tags registered as *special* tokens, as some real checkpoints do."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    cls = getattr(transformers, cls_name)
    kw = dict(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if tags_special:
        kw["additional_special_tokens"] = TAGS[:4]
    return cls(**kw)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("tags_special", [False, True], ids=["plain", "registered-special"])
def test_tags_are_atomic_and_survive_decoding_in_every_configured_tokenizer_and_model(path, tags_special, sample_data):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = load_model_config(path)
    texts = [d.dialogue for d in sample_data.train]
    tok = local_tokenizer(TOKENIZER_CLASS[cfg.model_type], texts, tags_special)
    ensure_tags(tok)
    for tag in TAGS:
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == tag, (cfg.model_type, tag, ids)
    ids = tok(TEXT, add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
    assert decode_summary(tok, ids) == TEXT  # skip_special_tokens=True alone would drop registered-special tags
    arch = {**ARCH.get(cfg.model_type, DEFAULT_ARCH), "vocab_size": len(tok), "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id, "decoder_start_token_id": tok.bos_token_id}
    mcls = AutoModelForSeq2SeqLM if cfg.family == "seq2seq" else AutoModelForCausalLM
    model = mcls.from_config(AutoConfig.for_model(cfg.model_type, **arch)).eval()
    x = torch.tensor([tok(TEXT)["input_ids"]])
    with torch.no_grad():
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=3, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert out.shape[1] >= 2  # the tags' ids are inside this architecture's vocabulary and it generates


def _short(cfg, **train):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def test_tiny_bart_full_fine_tuning_beats_its_untrained_self(tiny_bart_cfg, sample_data, tmp_path):
    from dialsum.config import DecodingSpec
    from dialsum.models.generation import HFEngine
    from dialsum.scoring.metric import score_corpus
    from dialsum.models.encoding import encode_input
    from dialsum.models.training import train_model

    cfg = _short(tiny_bart_cfg, epochs=4, eval_steps=9, logging_steps=3, eval_subset=8, early_stopping_patience=None)
    r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev[:24], tmp_path, MetricSpec())
    assert r.losses[-1] < r.losses[0] * 0.7
    assert (r.weights_dir / "config.json").is_file() and not (r.weights_dir / "adapter_config.json").exists()
    assert r.weights_dir == tmp_path / "model" and not (tmp_path / "adapter").exists()  # a whole model is not an adapter
    rows = sample_data.dev[24:]
    refs = [[d.summary] for d in rows]

    def greedy(adapter):
        e = HFEngine(cfg, cfg.path, adapter, 16)
        outs = e.run([encode_input(e.tokenizer, d.dialogue, cfg) for d in rows], DecodingSpec(name="greedy"), None)
        return score_corpus([o[0][0] for o in outs], refs).final

    untrained, tuned = greedy(None), greedy(r.weights_dir)
    assert tuned > untrained + 10, (untrained, tuned)  # 26.7 -> 43.2 with 150 denoising steps


def test_seq2seq_training_resumes_after_a_kill(tiny_bart_cfg, sample_data, tmp_path):
    from dialsum.models.training import train_model

    cfg = _short(tiny_bart_cfg, max_steps=12, eval_steps=4, logging_steps=2, eval_subset=4,
                 early_stopping_patience=None, save_total_limit=5)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec(), callbacks=[StopAfter(4)])
    assert (tmp_path / "checkpoints" / "checkpoint-4" / "optimizer.pt").exists()
    train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec(), resume=True)
    saved = json.loads((tmp_path / "train_result.json").read_text())
    assert saved["global_step"] == 12 and saved["method"] == "full"
    assert (saved["resumed_from_step"], saved["steps_this_process"]) == (4, 8)  # resumed at 4, not restarted
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("rdrop", [0.0, 0.5])
def test_label_smoothing_and_r_drop_train(tiny_bart_cfg, sample_data, tmp_path, rdrop):
    from dialsum.models.training import train_model

    cfg = _short(tiny_bart_cfg, max_steps=6, eval_steps=6, logging_steps=2, eval_subset=2,
                 early_stopping_patience=None, label_smoothing=0.1, rdrop_alpha=rdrop)
    r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path, MetricSpec())
    assert len(r.losses) == 3 and r.losses[-1] < r.losses[0]


def test_dry_run_plans_seq2seq_models_and_an_uncached_hub_id_is_one_line(tmp_path):
    cfg = tmp_path / "s2s.yaml"
    models = ROOT / "configs" / "models"
    cfg.write_text(f"name: s2s\ndata: {{dir: {ROOT / 'data' / 'sample'}}}\nmodels:\n"
                   + "".join(f"  - {models / n}.yaml\n" for n in ("kobart-digit82", "pko-t5-large", "mbart-50")))
    r = run_cli("train", "--dry-run", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("family=seq2seq finetune=full") == 3 and r.stdout.count("est. GPU memory") == 3
    assert "vocab 250054" in r.stdout  # mBART-50's real vocabulary, not a 32k guess
    r = run_cli("train", "--config", str(cfg), "--output-dir", str(tmp_path / "runs"), env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "digit82/kobart-summarization" in r.stderr


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_seq2seq_lora_and_qlora_save_an_adapter_that_generation_loads(tiny_bart_cfg, sample_data, tmp_path, method):
    from dialsum.config import DecodingSpec, GenerateSpec
    from dialsum.io.candidates import read_part
    from dialsum.models.generation import generate_candidates
    from dialsum.models.training import train_model

    cfg = _short(tiny_bart_cfg.model_copy(update={"finetune": method, "quantization": "4bit" if method == "qlora" else "none",
                                                  "lora": tiny_bart_cfg.lora.model_copy(update={"r": 8})}),
                 max_steps=4, eval_steps=4, logging_steps=2, eval_subset=2, early_stopping_patience=None)
    r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path / "t", MetricSpec())
    assert json.loads((r.weights_dir / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    cfg = cfg.model_copy(update={"decodings": [DecodingSpec(name="greedy")]})
    (part,) = generate_candidates(cfg, cfg.path, r.weights_dir, {"dev": sample_data.dev[:4]}, tmp_path / "s", GenerateSpec())
    assert len(read_part(part)) == 4


def _no_dropout_copy(src, dst):
    """The tiny BART with dropout off, so two runs that differ only in batching see exactly the same model."""
    import shutil

    shutil.copytree(src, dst)
    conf = json.loads((dst / "config.json").read_text())
    conf.update(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    (dst / "config.json").write_text(json.dumps(conf))
    return dst


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_seq2seq_logged_loss_does_not_grow_with_gradient_accumulation(tiny_bart_cfg, tiny_bart_dir, sample_data,
                                                                      tmp_path, smoothing):
    """BART/T5 ignore num_items_in_batch: the Trainer then neither divides their loss by G nor normalises it; with G=4
    the logged loss was ~4x that of G=1 on the same rows. Same 8 rows, batch 8 x G 1 vs batch 2 x G 4."""
    from dialsum.models.training import train_model

    path = _no_dropout_copy(tiny_bart_dir, tmp_path / "bart")
    first = {}
    for bs, g in ((8, 1), (2, 4)):
        cfg = _short(tiny_bart_cfg, max_steps=2, eval_steps=2, logging_steps=1, eval_subset=2, batch_size=bs,
                     grad_accum=g, early_stopping_patience=None, label_smoothing=smoothing)
        cfg = cfg.model_copy(update={"path": str(path)})
        r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path / f"g{g}", MetricSpec())
        first[g] = r.losses[:2]
    assert first[1][0] == pytest.approx(first[4][0], rel=1e-4)
    assert first[1][1] == pytest.approx(first[4][1], rel=1e-3)  # and the update was the same size


def test_label_smoothing_is_applied_inside_r_drop(tiny_bart_cfg, sample_data, tmp_path):
    """With rdrop_alpha > 0 the loss is dialsum's own; it must still smooth the labels (mbart-50.yaml sets both)."""
    import torch

    from dialsum.models.loading import load_for_inference
    from dialsum.models.seq2seq import Seq2SeqCollator
    from dialsum.models.encoding import encode_training_example
    from dialsum.models.losses import rdrop_loss, token_loss

    tok, model = load_for_inference(tiny_bart_cfg, tiny_bart_cfg.path, None)
    model.eval()  # no dropout: passes agree
    rows = [encode_training_example(tok, d, tiny_bart_cfg, [tok.eos_token_id]) for d in sample_data.train[:4]]
    batch = Seq2SeqCollator(tok.pad_token_id, model.config.decoder_start_token_id)(rows)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        smooth, plain = (rdrop_loss(model, batch, 0.5, eps, True) for eps in (0.1, 0.0))
    # independent reference: torch's own label-smoothed cross-entropy over the summary tokens
    ref = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                                            label_smoothing=0.1)
    assert smooth.item() == pytest.approx(ref.item(), rel=1e-5)  # KL is 0 in eval mode: the loss is the smoothed CE
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100).item(), rel=1e-5)
    assert token_loss(logits, batch["labels"], 0.1).item() == pytest.approx(ref.item(), rel=1e-5)


def test_full_fine_tuning_keeps_fp32_master_weights_under_bf16(tiny_bart_cfg, sample_data, tmp_path):
    """precision: bf16 once loaded the weights in bf16, where most AdamW updates at a small learning rate round to
    nothing (30 steps: 88.5 % of parameters changed in fp32, 39.2 % in bf16). Weights now stay fp32 (autocast does
    bf16 on GPU), so the share of changed parameters is the fp32 one."""
    import torch
    from safetensors.torch import load_file

    from dialsum.models.training import train_model

    base = load_file(str(Path(tiny_bart_cfg.path) / "model.safetensors"))
    share = {}
    for precision in ("fp32", "bf16"):
        cfg = _short(tiny_bart_cfg, max_steps=10, eval_steps=10, logging_steps=5, eval_subset=2, learning_rate=5e-5,
                     early_stopping_patience=None)
        cfg = cfg.model_copy(update={"precision": precision})
        r = train_model(cfg, cfg.path, sample_data.train, sample_data.dev, tmp_path / precision, MetricSpec())
        tuned = load_file(str(r.weights_dir / "model.safetensors"))
        assert all(t.dtype == torch.float32 for t in tuned.values())
        names = [n for n in base if n in tuned and base[n].shape == tuned[n].shape]
        changed = sum(int((tuned[n] != base[n]).sum()) for n in names)
        share[precision] = changed / sum(base[n].numel() for n in names)
    assert share["fp32"] > 0.5 and share["bf16"] == pytest.approx(share["fp32"], abs=1e-3)

