"""Stand-ins for real checkpoints: what a checkpoint carries for prompting and stopping, with none of its weights.

A folder of `../shared/checkpoints/<org>__<name>` holds `facts.json` (special tokens and ids, `add_bos_token`, the
generation config's eos ids, the architecture, the chat template where known) and, for some checkpoints, the real
tokenizer files. `build_standin_tokenizer` gives the real tokenizer where the folder has one (EXAONE-4.0), else a
byte-level BPE trained on the dialogues with the checkpoint's special tokens at their real strings (at their real ids
when those are small; the Llama-3/Qwen ids above 128k are appended after the vocabulary instead), the checkpoint's BOS
behaviour (a post-processor that adds BOS exactly where `add_bos_token` says so; T5 appends `</s>`, mBART wraps in
its language code and `</s>`) and its chat template (verbatim where given, the family's format where only described).
`build_standin` adds a model of the checkpoint's architecture class, width and depth cut down, and a
generation_config.json with its eos ids, saved with `save_pretrained`: every dialsum stage loads it like the real one.

Facts that are unknown stay unknown: where a stand-in has to choose (Kanana's tokens and template, KoGPT's BOS), the
choice is listed in `ASSUMED` and docs/models.md says so.
"""
from __future__ import annotations

import json
from pathlib import Path

from dialsum.errors import DialsumError

SMALL_ID = 256  # special tokens with a real id below this sit at that id in the stand-in vocabulary

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
# Tokens a checkpoint's template or usage needs as single tokens, beyond the named special tokens of facts.json.
EXTRA_TOKENS = {
    "Qwen/Qwen2.5-7B-Instruct": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "EleutherAI/polyglot-ko-5.8b": ["<|sep|>", "<|acc|>", "<|tel|>", "<|rrn|>"],
    "kakaobrain/kogpt@KoGPT6B-ryan1.5b-float16": ["[MASK]"],
    "facebook/mbart-large-50": ["ko_KR", "<mask>"],
    "digit82/kobart-summarization": ["<mask>"],
    "gogamza/kobart-base-v2": ["<mask>"],
}
# What a stand-in had to choose because the facts do not say (docs/models.md: "Real checkpoints").
ASSUMED = {
    "kakaocorp/kanana-1.5-8b-instruct-2505": "tokens and template unknown: Llama-3's special tokens and chat format",
    "kakaobrain/kogpt@KoGPT6B-ryan1.5b-float16": "whether the tokenizer adds [BOS] is unknown: it does not here",
    "digit82/kobart-summarization": "whether the tokenizer wraps inputs in <s>...</s> is unknown: it does not here",
    "gogamza/kobart-base-v2": "whether the tokenizer wraps inputs in <s>...</s> is unknown: it does not here",
    "MLP-KTLim/llama-3-Korean-Bllossom-8B": "template not captured verbatim: the Llama-3-Instruct format",
    "beomi/Llama-3-Open-Ko-8B": "template not captured verbatim: the Llama-3-Instruct format",
}


def folder_name(path: str, revision: str | None = None) -> str:
    """`org/name` (+ revision) -> the folder name used in ../shared/checkpoints."""
    base = path.replace("/", "__")
    return f"{base}__{revision}" if revision else base


def facts_folder(root: Path, path: str, revision: str | None = None) -> Path | None:
    for name in (folder_name(path, revision), folder_name(path)):
        if (Path(root) / name / "facts.json").is_file():
            return Path(root) / name
    return None


def load_facts(folder: Path) -> dict:
    f = Path(folder) / "facts.json"
    if not f.is_file():
        raise DialsumError(f"{folder}: no facts.json (not a ../shared/checkpoints folder)")
    return json.loads(f.read_text(encoding="utf-8"))


def has_real_tokenizer(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())


def _named(facts: dict) -> dict[str, dict]:
    """bos/eos/pad/unk/end_of_turn -> {token, id} as the facts give them (Kanana's unknowns: Llama-3's)."""
    out = {k: facts[k] for k in ("bos", "eos", "pad", "unk", "end_of_turn") if isinstance(facts.get(k), dict)}
    if not out and facts["checkpoint"] in ASSUMED:  # Kanana: nothing known; the Llama-3 family's tokens
        out = {"bos": {"token": "<|begin_of_text|>", "id": 128000}, "eos": {"token": "<|eot_id|>", "id": 128009},
               "pad": {"token": "<|end_of_text|>", "id": 128001}, "end_of_turn": {"token": "<|eot_id|>", "id": 128009}}
    return out


def _template(facts: dict, named: dict) -> str | None:
    if facts.get("chat_template"):
        return facts["chat_template"]
    bos = named.get("bos", {}).get("token")
    if bos == "<|begin_of_text|>" and (facts.get("template_writes_bos") or facts["checkpoint"] in ASSUMED):
        return LLAMA3_TEMPLATE
    return None


def _extra(facts: dict, named: dict) -> list[str]:
    extra = list(EXTRA_TOKENS.get(facts["checkpoint"], []))
    if named.get("bos", {}).get("token") == "<|begin_of_text|>":
        extra += LLAMA3_TOKENS
    return extra


def build_standin_tokenizer(folder: Path, texts: list[str], vocab_size: int = 2000):
    """The real tokenizer where the folder has its files, else the BPE stand-in described in the module docstring."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if has_real_tokenizer(folder):
        return AutoTokenizer.from_pretrained(str(folder))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    facts = load_facts(folder)
    named = _named(facts)
    small: dict[int, str] = {}
    large: list[str] = []
    for v in sorted(named.values(), key=lambda v: (v.get("id") is None, v.get("id") or 0)):
        tok, i = v["token"], v.get("id")
        if tok in small.values() or tok in large:
            continue
        if i is not None and i < SMALL_ID and i not in small:
            small[i] = tok
        else:
            large.append(tok)
    large += [t for t in _extra(facts, named) if t not in small.values() and t not in large]
    width = max(small) + 1 if small else 0
    specials = [small.get(i, f"<|standin_reserved_{i}|>") for i in range(width)]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    bpe.add_special_tokens(large)
    ids = {t: bpe.token_to_id(t) for t in specials + large}
    bos, eos = named.get("bos", {}).get("token"), named.get("eos", {}).get("token")
    arch = facts["architecture"].split()[0]
    if arch.startswith("T5"):
        bpe.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                           special_tokens=[(eos, ids[eos])])
    elif arch.startswith("MBart"):
        bpe.post_processor = processors.TemplateProcessing(
            single=f"ko_KR $A {eos}", pair=f"ko_KR $A $B {eos}", special_tokens=[("ko_KR", ids["ko_KR"]), (eos, ids[eos])])
    elif (facts.get("add_bos_token") or (facts["checkpoint"] in ASSUMED and bos == "<|begin_of_text|>"
                                         and facts.get("add_bos_token") is None)) and bos:
        bpe.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, ids[bos])])
    kw = {f"{k}_token": named[k]["token"] for k in ("bos", "eos", "pad", "unk") if k in named}
    others = [t for t in large + list(small.values()) if t not in kw.values()]
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, extra_special_tokens=others, **kw)
    template = _template(facts, named)
    if template:
        fast.chat_template = template
    return fast


def _real_to_standin(tokenizer, facts: dict, real_ids: list[int]) -> list[int]:
    """Map the checkpoint's token ids (generation eos) to the stand-in's through their token strings."""
    by_id = {v["id"]: v["token"] for v in _named(facts).values() if v.get("id") is not None}
    out = []
    for i in real_ids:
        tok = by_id.get(i)
        sid = tokenizer.convert_tokens_to_ids(tok) if tok is not None else i
        if sid is not None and sid not in out:
            out.append(int(sid))
    return out


def generation_eos(tokenizer, facts: dict, folder: Path) -> list[int]:
    """The generation config's eos ids, as the stand-in numbers them (the real file where the folder has one)."""
    gc = Path(folder) / "generation_config.json"
    if gc.is_file():
        eos = json.loads(gc.read_text(encoding="utf-8")).get("eos_token_id")
        return [eos] if isinstance(eos, int) else list(eos or [])
    ids = _real_to_standin(tokenizer, facts, facts.get("generation_eos_token_ids") or [])
    return ids or [tokenizer.eos_token_id]


def _model_config(facts: dict, tokenizer, rows: int):
    """The checkpoint's architecture class at width 64 (head_dim 32, what vLLM's CPU kernels take) and depth 2."""
    from transformers import AutoConfig

    arch = facts["architecture"].split()[0]
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    dec = dict(vocab_size=rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
               max_position_embeddings=2048, **ids)
    if arch == "LlamaForCausalLM":
        return AutoConfig.for_model("llama", num_key_value_heads=1, head_dim=32, tie_word_embeddings=False, **dec)
    if arch == "Qwen2ForCausalLM":
        return AutoConfig.for_model("qwen2", num_key_value_heads=1, tie_word_embeddings=False, **dec)
    if arch == "Exaone4ForCausalLM":
        return AutoConfig.for_model("exaone4", num_key_value_heads=1, head_dim=32, tie_word_embeddings=True,
                                    layer_types=["full_attention"] * 2, sliding_window=None, **dec)
    if arch == "GPTNeoXForCausalLM":
        return AutoConfig.for_model("gpt_neox", rotary_pct=0.5, tie_word_embeddings=False, **dec)
    if arch == "GPTJForCausalLM":
        return AutoConfig.for_model("gptj", vocab_size=rows, n_embd=64, n_layer=2, n_head=2, rotary_dim=16,
                                    n_positions=2048, tie_word_embeddings=False, **ids)
    enc_dec = dict(vocab_size=rows, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=1024,
                   **ids)
    eos = tokenizer.eos_token_id
    if arch == "BartForConditionalGeneration":  # KoBART: the decoder starts with </s>, forced eos </s>
        return AutoConfig.for_model("bart", decoder_start_token_id=eos, forced_eos_token_id=eos, **enc_dec)
    if arch == "MBartForConditionalGeneration":  # decoder starts with </s>; the language code is forced first
        return AutoConfig.for_model("mbart", decoder_start_token_id=eos, forced_eos_token_id=eos, **enc_dec)
    if arch == "T5ForConditionalGeneration":  # T5 v1.1: gated-gelu, untied head, the decoder starts with <pad>
        return AutoConfig.for_model("t5", vocab_size=rows, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                    decoder_start_token_id=tokenizer.pad_token_id, **ids)
    raise DialsumError(f"{facts['checkpoint']}: no stand-in for architecture {arch}")


def build_standin(folder: Path, out_dir: Path, texts: list[str], seed: int = 0) -> Path:
    """Tokenizer + randomly initialised model of the checkpoint's class + generation config, saved to out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationConfig

    folder, out_dir = Path(folder), Path(out_dir)
    facts = load_facts(folder)
    tokenizer = build_standin_tokenizer(folder, texts)
    rows = len(tokenizer)
    if facts.get("vocab_size") and facts["vocab_size"] > rows and not has_real_tokenizer(folder):
        rows = -(-rows // 64) * 64  # checkpoints pad their matrix beyond the tokenizer (Qwen, polyglot-ko)
    elif facts.get("vocab_size"):
        rows = max(rows, facts["vocab_size"]) if has_real_tokenizer(folder) else rows
    config = _model_config(facts, tokenizer, rows)
    torch.manual_seed(seed)
    cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_config(config)
    eos = generation_eos(tokenizer, facts, folder)
    gc = GenerationConfig(eos_token_id=eos if len(eos) > 1 else eos[0], bos_token_id=tokenizer.bos_token_id,
                          pad_token_id=tokenizer.pad_token_id,
                          decoder_start_token_id=getattr(config, "decoder_start_token_id", None),
                          forced_eos_token_id=getattr(config, "forced_eos_token_id", None))
    model.generation_config = gc
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "standin.json").write_text(json.dumps({"checkpoint": facts["checkpoint"], "facts": str(folder.resolve()),
                                                  "assumed": ASSUMED.get(facts["checkpoint"])}, indent=1))
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
