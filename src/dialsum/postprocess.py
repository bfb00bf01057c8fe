"""Post-processing rules: small pure text -> text functions, applied in a configured order.

Each rule must earn its place: `ablate` adds rules one at a time (in order) and keeps a rule only when it raises
the dev score on one half of dev and does not lower it on the other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

_ECHO = re.compile(r"^\s*(?:###\s*(?:Response|Answer|응답|요약)\s*:?|<\|?assistant\|?>|assistant\s*\n|"
                   r"(?:요약|요약문|Summary|summary)\s*[:：])\s*")
_ROLE_TOKENS = re.compile(r"<\|(?:system|user|assistant|im_start|im_end|eot_id|end_of_text|endoftext)\|>|</?s>")
_SECTION = re.compile(r"\n\s*###\s")


def strip_prompt_echo(t: str) -> str:
    """Drop leading 'Summary:'/'### Response:'/role tokens and anything from a new '### ' section on."""
    t = _ROLE_TOKENS.sub("", t)
    prev = None
    while prev != t:
        prev, t = t, _ECHO.sub("", t, count=1)
    m = _SECTION.search(t)
    return t[: m.start()] if m else t


def first_paragraph(t: str) -> str:
    """Keep text before the first blank line (models often ramble on after it)."""
    parts = re.split(r"\n\s*\n", t.strip(), maxsplit=1)
    return parts[0] if parts else t


_TAG_SPACED = re.compile(r"#\s*Person\s*(\d+)\s*#")
_TAG_BARE = re.compile(r"(?<![#A-Za-z0-9])Person\s?(\d+)(?![#0-9])")
_TAG_PARTICLE = re.compile(r"(#Person\d+#)\s+(은|는|이|가|을|를|의|에게|와|과|도|에게서|께|한테|로|으로)(?=[\s.,!?]|$)")


def normalise_speaker_tags(t: str) -> str:
    """'# Person1 #' and 'Person1' -> '#Person1#'; '#Person1# 은' -> '#Person1#은'."""
    t = _TAG_SPACED.sub(r"#Person\1#", t)
    t = _TAG_BARE.sub(r"#Person\1#", t)
    return _TAG_PARTICLE.sub(r"\1\2", t)


_SENT = re.compile(r"(?<=[.!?])\s+")


def split_sentences(t: str) -> list[str]:
    return [s for s in _SENT.split(t.strip()) if s]


def drop_repeated_sentences(t: str) -> str:
    seen, out = set(), []
    for s in split_sentences(t):
        key = " ".join(s.split())
        if key not in seen:
            seen.add(key)
            out.append(s)
    return " ".join(out)


_ALLOWED = re.compile(r"^(?:#\w+#|[\uac00-\ud7a3\u3131-\u318e]|[A-Za-z0-9]|[\s.,!?'\"()%:;~\-·/&+])+$")
_REPEAT_PUNCT = re.compile(r"([^\w\s#])\1{3,}")


def drop_garbage_runs(t: str) -> str:
    """Remove words made of characters a Korean summary never holds (mojibake, stray symbols) and symbol runs."""
    words = [w for w in t.split() if _ALLOWED.match(w) or re.search(r"[\uac00-\ud7a3]", w)]
    return _REPEAT_PUNCT.sub(r"\1", " ".join(words))


def normalise_whitespace(t: str) -> str:
    return " ".join(t.split())


def final_punctuation(t: str) -> str:
    t = t.rstrip()
    return t + "." if t and t[-1] not in ".!?" else t


RULES: dict[str, Callable[[str], str]] = {
    f.__name__: f for f in (strip_prompt_echo, first_paragraph, normalise_speaker_tags, drop_repeated_sentences,
                            drop_garbage_runs, normalise_whitespace, final_punctuation)
}


def cap_sentences(t: str, k: int) -> str:
    return " ".join(split_sentences(t)[:k])


def apply_rules(text: str, rules: Sequence[str], max_sentences: int | None = None) -> str:
    """Apply the named rules in order; an empty result falls back to the input (a submission needs text)."""
    out = text
    for name in rules:
        if name not in RULES:
            raise ValueError(f"unknown post-processing rule {name!r} (known: {', '.join(RULES)})")
        out = RULES[name](out)
    if max_sentences:
        out = cap_sentences(out, max_sentences)
    return out if out.strip() else text


@dataclass(frozen=True)
class RuleGain:
    rule: str
    on: float
    off: float
    delta_a: float
    delta_b: float
    enabled: bool

    @property
    def delta(self) -> float:
        return self.on - self.off


def ablate(preds: Sequence[str], refs: Sequence[Sequence[str]], rules: Sequence[str],
           score: Callable[[Sequence[str], Sequence[Sequence[str]]], float]) -> tuple[list[str], list[RuleGain]]:
    """Greedy forward selection in the given order, judged on two dev halves (even / odd rows)."""
    halves = [list(range(0, len(preds), 2)), list(range(1, len(preds), 2))]

    def score_on(idx, active):
        return score([apply_rules(preds[i], active) for i in idx], [refs[i] for i in idx])

    enabled: list[str] = []
    gains = []
    allidx = list(range(len(preds)))
    for rule in rules:
        off = score_on(allidx, enabled)
        on = score_on(allidx, enabled + [rule])
        da = score_on(halves[0], enabled + [rule]) - score_on(halves[0], enabled) if halves[0] else 0.0
        db = score_on(halves[1], enabled + [rule]) - score_on(halves[1], enabled) if halves[1] else 0.0
        keep = max(da, db) > 1e-9 and min(da, db) >= -1e-9
        if keep:
            enabled.append(rule)
        gains.append(RuleGain(rule, on, off, da, db, keep))
    return enabled, gains
