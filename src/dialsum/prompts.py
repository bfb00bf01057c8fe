"""Prompt formats shared by training and generation, so the model sees at inference exactly what it saw in training.

* instruction: `### Instruction:` / `### Input:` / `### Response:` with the summary and EOS as the target;
* chat: the tokenizer's own chat template (system, user, assistant); the target is whatever the template renders
  after the generation prompt for the assistant turn (its end-of-turn marker included).
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
    """The text the model must produce after the prompt (summary plus end marker)."""
    if style.format == "instruction":
        return summary + tokenizer.eos_token
    instruction = instruction or style.instruction
    msgs = _chat_messages(dialogue, style, instruction)
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs + [{"role": "assistant", "content": summary}], tokenize=False)
    if not full.startswith(prompt):
        return summary + tokenizer.eos_token
    return full[len(prompt):].rstrip("\n")


def _adds_special(style: PromptStyle) -> bool:
    # Chat templates write BOS themselves; plain text prompts get the tokenizer's BOS.
    return style.format == "instruction"


def encode_prompt(tokenizer, dialogue: str, style: PromptStyle, max_input_tokens: int,
                  instruction: str | None = None) -> list[int]:
    """Token ids of the prompt; an over-long dialogue is cut (at its end) so the prompt fits max_input_tokens."""
    ids = tokenizer(render_prompt(tokenizer, dialogue, style, instruction), add_special_tokens=_adds_special(style))["input_ids"]
    if len(ids) <= max_input_tokens:
        return ids
    d_ids = tokenizer(dialogue, add_special_tokens=False)["input_ids"]
    keep = max(1, len(d_ids) - (len(ids) - max_input_tokens))
    while True:
        cut = tokenizer.decode(d_ids[:keep], skip_special_tokens=False)
        ids = tokenizer(render_prompt(tokenizer, cut, style, instruction), add_special_tokens=_adds_special(style))["input_ids"]
        if len(ids) <= max_input_tokens or keep <= 1:
            return ids[-max_input_tokens:] if len(ids) > max_input_tokens else ids
        keep -= max(1, len(ids) - max_input_tokens)


def encode_example(tokenizer, dialogue: str, summary: str, style: PromptStyle, max_input_tokens: int,
                   max_target_tokens: int, instruction: str | None = None) -> dict[str, list[int]]:
    """input_ids = prompt + target; labels = -100 over the prompt, the target's ids over the target."""
    prompt_ids = encode_prompt(tokenizer, dialogue, style, max_input_tokens, instruction)
    target = render_target(tokenizer, dialogue, summary, style, instruction)
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
    return {
        "input_ids": prompt_ids + target_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target_ids,
        "attention_mask": [1] * (len(prompt_ids) + len(target_ids)),
    }
