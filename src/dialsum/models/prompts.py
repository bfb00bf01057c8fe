"""Prompt formats shared by training and generation, so the model sees at inference exactly what it saw in training.

* instruction: `### Instruction:` / `### Input:` / `### Response:`; the target is the summary and a stop token;
* chat: the tokenizer's own chat template (system, user, assistant); the target is what the template renders after
  the generation prompt for the assistant turn.

Two rules make every checkpoint's quirks harmless (like LLaMA-Factory's template registry):
* **the trained target ends with a token generation stops on.** Where the template ends the turn with its own token
  (Qwen's `<|im_end|>`, Llama-3's `<|eot_id|>`, EXAONE's `[|endofturn|]`) that token is trained and joins the stop
  set (`stop_token_ids`), even when the generation config names another one (Llama-3: 128001 vs 128009); where the
  template writes nothing after the reply (SOLAR), the tokenizer's EOS is appended;
* **BOS exactly as the checkpoint's own tokenizer adds it, once.** Text is tokenized without special tokens; BOS is
  prepended only when the tokenizer itself adds one (SOLAR, Llama-2) and the rendered text does not already start
  with it (Llama-3 templates write it): never twice, never where the checkpoint has none (Qwen2.5, EXAONE).
Loss is on the target only: prompt and padding labels are -100.
"""
from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100

AUGMENT_INSTRUCTIONS = (
    "다음 대화를 요약해주세요.",
    "아래 대화의 핵심 내용을 정리해주세요.",
    "이 대화에서 누가 무엇을 했는지 한두 문장으로 요약하세요.",
    "대화의 주요 내용을 간결하게 요약해 주세요.",
    "다음 대화를 읽고 중요한 정보를 중심으로 짧게 정리하세요.",
)
_PROBE_DIALOGUE = "#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."
_PROBE_SUMMARY = "#Person1#과 #Person2#가 인사한다."


@dataclass(frozen=True)
class PromptStyle:
    format: str  # "instruction" | "chat"
    instruction: str
    system_prompt: str


def render_prompt(tokenizer, dialogue: str, style: PromptStyle, instruction: str | None = None) -> str:
    instruction = instruction or style.instruction
    if style.format == "instruction":
        return f"### Instruction:\n{instruction}\n\n### Input:\n{dialogue}\n\n### Response:\n"
    messages = _chat_messages(dialogue, style, instruction)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _chat_messages(dialogue: str, style: PromptStyle, instruction: str) -> list[dict]:
    msgs = [{"role": "system", "content": style.system_prompt}] if style.system_prompt else []
    return msgs + [{"role": "user", "content": f"{instruction}\n\n{dialogue}"}]


def render_target(tokenizer, dialogue: str, summary: str, style: PromptStyle, instruction: str | None = None) -> str:
    """The text the template writes after the prompt for the assistant's reply (end-of-turn marker included, the
    template's trailing newline not); the instruction format writes the bare summary. A stop token is added at the
    id level by `target_ids` where this text does not end with one."""
    if style.format == "instruction":
        return summary
    instruction = instruction or style.instruction
    msgs = _chat_messages(dialogue, style, instruction)
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": summary}], tokenize=False)
    if not full.startswith(prompt):
        return summary
    return full[len(prompt):].rstrip()


def special_ids(tokenizer) -> set[int]:
    """Ids of every special token: the named ones and added tokens flagged special (role/turn markers)."""
    ids = set(tokenizer.all_special_ids)
    for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(tok, "special", False):
            ids.add(int(i))
    return ids


def turn_end_id(tokenizer, style: PromptStyle) -> int | None:
    """The special token a chat template writes right after the assistant's reply, or None (instruction format,
    or a template that writes nothing there, like SOLAR's)."""
    if style.format != "chat":
        return None
    target = render_target(tokenizer, _PROBE_DIALOGUE, _PROBE_SUMMARY, style)
    pos = target.rfind(_PROBE_SUMMARY)
    after = target[pos + len(_PROBE_SUMMARY):] if pos >= 0 else target
    special = special_ids(tokenizer)
    return next((i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special), None)


def stop_token_ids(tokenizer, generation_eos=None, style: PromptStyle | None = None) -> list[int]:
    """Every id generation stops on, the same set for training targets, transformers and vLLM: the generation
    config's eos ids, the tokenizer's EOS, and the chat template's end-of-turn token (order kept, no repeats)."""
    ids = [] if generation_eos is None else ([generation_eos] if isinstance(generation_eos, int) else list(generation_eos))
    extra = [tokenizer.eos_token_id, turn_end_id(tokenizer, style) if style is not None else None]
    for i in extra:
        if i is not None and i not in ids:
            ids.append(i)
    return [int(i) for i in ids]


def trained_end_id(tokenizer, style: PromptStyle | None) -> int | None:
    """The token every training target ends with: the template's end-of-turn token where it writes one, else EOS."""
    end = turn_end_id(tokenizer, style) if style is not None else None
    return end if end is not None else tokenizer.eos_token_id


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's own usage (add_special_tokens=True) prepends BOS (probed once per tokenizer object:
    every prompt asks)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    cached = tokenizer.__dict__.get("_dialsum_adds_bos")
    if cached is not None and cached[0] == bos:
        return cached[1]
    plain = tokenizer("가", add_special_tokens=False)["input_ids"]
    full = tokenizer("가", add_special_tokens=True)["input_ids"]
    answer = len(full) > len(plain) and full[0] == bos
    tokenizer.__dict__["_dialsum_adds_bos"] = (bos, answer)
    return answer


def encode_text(tokenizer, text: str) -> list[int]:
    """Prompt text to ids: no special tokens from the tokenizer except BOS where its own usage adds one and the
    text does not already begin with it (so BOS appears at most once, and exactly once where the checkpoint has it)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos(tokenizer) and (not ids or ids[0] != tokenizer.bos_token_id):
        ids = [tokenizer.bos_token_id] + ids
    return ids


def encode_prompt(tokenizer, dialogue: str, style: PromptStyle, max_input_tokens: int,
                  instruction: str | None = None) -> list[int]:
    """Token ids of the prompt; an over-long dialogue is cut (at its end) so the prompt fits max_input_tokens."""
    ids = encode_text(tokenizer, render_prompt(tokenizer, dialogue, style, instruction))
    if len(ids) <= max_input_tokens:
        return ids
    d_ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"]
    keep = max(1, len(d_ids) - (len(ids) - max_input_tokens))
    while True:
        cut = tokenizer.decode(d_ids[:keep], skip_special_tokens=False)
        ids = encode_text(tokenizer, render_prompt(tokenizer, cut, style, instruction))
        if len(ids) <= max_input_tokens or keep <= 1:
            return ids[-max_input_tokens:] if len(ids) > max_input_tokens else ids
        keep -= max(1, len(ids) - max_input_tokens)


def target_ids(tokenizer, dialogue: str, summary: str, style: PromptStyle, max_target_tokens: int,
               stops: list[int], instruction: str | None = None) -> list[int]:
    """The trained ids after the prompt, ending in a stop token: the template's own end-of-turn token where it
    writes one, else the tokenizer's EOS appended. Cut to max_target_tokens with the stop token kept."""
    ids = tokenizer(render_target(tokenizer, dialogue, summary, style, instruction),
                    add_special_tokens=False)["input_ids"]
    end = next((k for k, t in enumerate(ids) if t in stops), None)
    if end is not None:
        ids = ids[:end + 1]
    else:
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id in stops else stops[0]
        ids = ids + [eos]
    if len(ids) > max_target_tokens:
        ids = ids[: max_target_tokens - 1] + ids[-1:]
    return ids


def encode_example(tokenizer, dialogue: str, summary: str, style: PromptStyle, max_input_tokens: int,
                   max_target_tokens: int, stops: list[int], instruction: str | None = None) -> dict[str, list[int]]:
    """input_ids = prompt + target; labels = -100 over the prompt, the target's ids over the target."""
    prompt_ids = encode_prompt(tokenizer, dialogue, style, max_input_tokens, instruction)
    tgt = target_ids(tokenizer, dialogue, summary, style, max_target_tokens, stops, instruction)
    return {
        "input_ids": prompt_ids + tgt,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + tgt,
        "attention_mask": [1] * (len(prompt_ids) + len(tgt)),
    }
