"""A model config's view of prompts: what its model reads and is trained on, and the ids it stops on.

One place dispatches on the family (decoder-only prompt formats in dialsum.models.prompts, seq2seq encoder inputs in
dialsum.models.seq2seq), so training, both generation backends and `dialsum preview` encode a row identically.
"""
from __future__ import annotations

from dialsum.config import ModelConfig
from dialsum.io.data import Dialogue
from dialsum.models.prompts import PromptStyle, encode_example, encode_prompt, stop_token_ids


def style_of(cfg: ModelConfig) -> PromptStyle:
    return PromptStyle(cfg.prompt_format, cfg.instruction, cfg.system_prompt)


def encode_input(tokenizer, dialogue: str, cfg: ModelConfig) -> list[int]:
    """What the model reads for one dialogue: the prompt (decoder-only) or the encoder ids (seq2seq)."""
    if cfg.family == "seq2seq":
        from dialsum.models.seq2seq import encode_source

        return encode_source(tokenizer, dialogue, cfg.source_prefix, cfg.max_input_tokens)
    return encode_prompt(tokenizer, dialogue, style_of(cfg), cfg.max_input_tokens)


def model_stops(tokenizer, generation_eos, cfg: ModelConfig) -> list[int]:
    """The ids generation stops on for this model (see prompts.stop_token_ids): its generation config's eos ids,
    the tokenizer's EOS and, for chat prompts, the template's end-of-turn token. Training targets end with one."""
    return stop_token_ids(tokenizer, generation_eos, style_of(cfg) if cfg.family == "decoder" else None)


def encode_training_example(tokenizer, d: Dialogue, cfg: ModelConfig, stops: list[int],
                            instruction: str | None = None) -> dict:
    if cfg.family == "seq2seq":
        from dialsum.models.seq2seq import encode_seq2seq_example

        return encode_seq2seq_example(tokenizer, d.dialogue, d.summary, cfg.source_prefix, cfg.max_input_tokens,
                                      cfg.max_new_tokens)
    return encode_example(tokenizer, d.dialogue, d.summary, style_of(cfg), cfg.max_input_tokens, cfg.max_new_tokens,
                          stops, instruction)


def generation_extras(tokenizer, cfg: ModelConfig) -> dict:
    """Model-specific `generate` arguments: mBART starts its output with the target language code."""
    if cfg.lang_code:
        return {"forced_bos_token_id": tokenizer.convert_tokens_to_ids(cfg.lang_code)}
    return {}
