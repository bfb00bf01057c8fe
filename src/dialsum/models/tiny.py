"""Build the tiny local Llama (+ byte-level BPE tokenizer) that stands in for a real LLM on CPU machines.

It is saved with `save_pretrained`, so every later stage loads it with AutoModelForCausalLM/AutoTokenizer exactly
as it loads a hub model. A short causal-LM pre-training on the training dialogues gives the base some Korean, so
LoRA fine-tuning on it has something to adapt (a random base cannot summarise anything).
"""
from __future__ import annotations

import math
from pathlib import Path

from dialsum.config import TinyModelSpec
from dialsum.io.data import Dialogue

from dialsum.models.special_tokens import MASK_TAGS, SPEAKER_TAGS
from dialsum.models.standins import LLAMA3_TEMPLATE, LLAMA3_TOKENS

ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int, with_tags: bool = False, tokens: str = "plain"):
    """A byte-level BPE trained on `texts`. `tokens` picks the special tokens and chat format: `plain` (its own
    markers) or `llama-3` (MLP-KTLim/llama-3-Korean-Bllossom-8B's: BOS added by the tokenizer and written by the
    template, `<|eot_id|>` ending a turn and serving as EOS, `<|end_of_text|>` as pad). The competition's tags are
    left out unless `with_tags` (no real checkpoint has them; dialsum adds them as it does to every checkpoint)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    llama3 = tokens == "llama-3"
    special = LLAMA3_TOKENS if llama3 else ["<pad>", "<s>", "</s>"] + ROLE_TOKENS
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if llama3:
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="<|eot_id|>",
                                       pad_token="<|end_of_text|>", padding_side="left",
                                       extra_special_tokens=["<|start_header_id|>", "<|end_header_id|>"])
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                       padding_side="left", additional_special_tokens=ROLE_TOKENS)
    # Speaker and mask tags are atomic tokens but not "special": decoding must keep them in summaries.
    if with_tags:
        fast.add_tokens(SPEAKER_TAGS + MASK_TAGS)
    fast.chat_template = LLAMA3_TEMPLATE if llama3 else CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: Path, train: list[Dialogue], spec: TinyModelSpec | None = None,
                     family: str = "decoder") -> Path:
    """Train the tokenizer, build the Llama (or, for `seq2seq`, a BART), pre-train it briefly on the dialogues, save
    both to out_dir."""
    import torch
    from transformers import LlamaForCausalLM

    spec = spec or TinyModelSpec()
    out_dir = Path(out_dir)
    texts = [d.dialogue for d in train] + [d.summary for d in train if d.summary]
    tokenizer = build_tokenizer(texts, spec.vocab_size, spec.with_tags, spec.tokens)
    torch.manual_seed(spec.seed)
    if family == "seq2seq":
        return _save(_tiny_bart(tokenizer, texts, spec), tokenizer, out_dir)
    config = tiny_config(spec, len(tokenizer), family, tokenizer)
    model = LlamaForCausalLM(config)
    if spec.pretrain_steps:
        _pretrain(model, tokenizer, texts, spec.pretrain_steps, spec.seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if spec.tokens == "llama-3":  # Bllossom's generation_config.json: eos is <|end_of_text|> alone, not <|eot_id|>
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    return _save(model, tokenizer, out_dir)


def tiny_config(spec: TinyModelSpec, vocab_size: int, family: str = "decoder", tokenizer=None):
    """The transformers config of a tiny model (a Llama, or a BART for `seq2seq`); the memory plan instantiates the
    same config on the meta device. Token ids come from the tokenizer when there is one."""
    from transformers import BartConfig, LlamaConfig

    ids = {k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    if family == "seq2seq":
        return BartConfig(
            vocab_size=vocab_size, d_model=spec.hidden_size, encoder_layers=spec.num_hidden_layers,
            decoder_layers=spec.num_hidden_layers, encoder_attention_heads=spec.num_attention_heads,
            decoder_attention_heads=spec.num_attention_heads, encoder_ffn_dim=spec.intermediate_size,
            decoder_ffn_dim=spec.intermediate_size, max_position_embeddings=512, dropout=0.1,
            decoder_start_token_id=ids["bos_token_id"], forced_eos_token_id=None, tie_word_embeddings=True, **ids)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, head_dim=spec.hidden_size // spec.num_attention_heads,
        max_position_embeddings=1024, tie_word_embeddings=spec.tie_word_embeddings, torch_dtype="float32", **ids)


def _save(model, tokenizer, out_dir: Path) -> Path:
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        import shutil
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _tiny_bart(tokenizer, texts: list[str], spec: TinyModelSpec):
    """A BART of the tiny spec's width and depth (encoder and decoder each), pre-trained as a denoiser."""
    from transformers import BartForConditionalGeneration

    config = tiny_config(spec, len(tokenizer), "seq2seq", tokenizer)
    model = BartForConditionalGeneration(config)
    if spec.pretrain_steps:
        _pretrain_denoiser(model, tokenizer, texts, spec.pretrain_steps, spec.seed)
    gc = model.generation_config
    gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    gc.decoder_start_token_id, gc.forced_bos_token_id, gc.forced_eos_token_id = tokenizer.bos_token_id, None, None
    gc.num_beams, gc.no_repeat_ngram_size, gc.early_stopping = 1, 0, False
    return model


def _pretrain_denoiser(model, tokenizer, texts: list[str], steps: int, seed: int) -> None:
    """BART-style: reconstruct a text from a copy with 15% of its tokens dropped (first 96 tokens of each text)."""
    import random

    from dialsum.models.seq2seq import Seq2SeqCollator

    rng = random.Random(seed)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:96] for t in texts]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    collate = Seq2SeqCollator(tokenizer.pad_token_id)

    def batch() -> dict:
        rows = []
        for seq in rng.sample(ids, min(16, len(ids))):
            src = [bos] + [t for t in seq if rng.random() > 0.15] + [eos]
            rows.append({"input_ids": src, "attention_mask": [1] * len(src), "labels": seq + [eos]})
        return collate(rows)

    _fit(model, steps, batch)


def _fit(model, steps: int, batch) -> None:
    """AdamW (lr 3e-3) with a cosine schedule over `steps` batches from batch(); leaves the model in eval mode."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    for _ in range(steps):
        loss = model(**batch()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()


def _pretrain(model, tokenizer, texts: list[str], steps: int, seed: int) -> None:
    """Plain next-token training on the raw texts (full weights), a few hundred small steps."""
    import random

    import torch

    rng = random.Random(seed)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:255] + [tokenizer.eos_token_id] for t in texts]

    def batch() -> dict:
        rows = rng.sample(ids, min(16, len(ids)))
        width = max(map(len, rows))
        x = torch.full((len(rows), width), tokenizer.pad_token_id)
        y = torch.full((len(rows), width), -100)
        for i, seq in enumerate(rows):
            x[i, :len(seq)] = torch.tensor(seq)
            y[i, :len(seq)] = torch.tensor(seq)
        return {"input_ids": x, "attention_mask": (y != -100).long(), "labels": y}

    _fit(model, steps, batch)
