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


@dataclass(frozen=True)
class LengthCap:
    """Keep whole sentences while under both caps (the first sentence always stays). ROUGE F1 punishes long output."""
    max_sentences: int | None = None
    max_morphemes: int | None = None

    def __str__(self) -> str:
        parts = [f"sentences<={self.max_sentences}"] if self.max_sentences else []
        parts += [f"morphemes<={self.max_morphemes}"] if self.max_morphemes else []
        return "length_cap(" + (", ".join(parts) or "none") + ")"


def cap_length(t: str, cap: LengthCap, count: Callable[[str], int] = lambda x: len(x.split())) -> str:
    kept: list[str] = []
    used = 0
    for s in split_sentences(t):
        n = count(s)
        if kept and ((cap.max_sentences and len(kept) >= cap.max_sentences) or
                     (cap.max_morphemes and used + n > cap.max_morphemes)):
            break
        kept.append(s)
        used += n
    return " ".join(kept) if kept else t


def length_cap_grid(refs: Sequence[Sequence[str]], count: Callable[[str], int]) -> list[LengthCap]:
    """Caps worth trying on dev: 1-3 sentences, and the 50/75/90/100th percentile of reference lengths."""
    lengths = sorted(count(r) for rs in refs for r in rs)
    grid = [LengthCap(max_sentences=k) for k in (1, 2, 3)]
    if lengths:
        qs = sorted({lengths[min(len(lengths) - 1, int(q * (len(lengths) - 1)))] for q in (0.5, 0.75, 0.9, 1.0)})
        grid += [LengthCap(max_morphemes=q) for q in qs if q > 0]
    return grid


def apply_rules(text: str, rules: Sequence[str], cap: LengthCap | None = None,
                count: Callable[[str], int] = lambda x: len(x.split())) -> str:
    """Apply the named rules in order, then the length cap; an empty result falls back to the input."""
    out = text
    for name in rules:
        if name not in RULES:
            raise ValueError(f"unknown post-processing rule {name!r} (known: {', '.join(RULES)})")
        out = RULES[name](out)
    if cap is not None:
        out = cap_length(out, cap, count)
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


def _helps(da: float, db: float) -> bool:
    """Raises the score on one dev half and lowers it on neither."""
    return max(da, db) > 1e-9 and min(da, db) >= -1e-9


def ablate(preds: Sequence[str], refs: Sequence[Sequence[str]], rules: Sequence[str],
           score: Callable[[Sequence[str], Sequence[Sequence[str]]], float],
           caps: Sequence[LengthCap] = (), count: Callable[[str], int] = lambda x: len(x.split()),
           ) -> tuple[list[str], LengthCap | None, list[RuleGain]]:
    """Greedy forward selection of rules in the given order, then the best length cap from `caps`, each judged on
    two dev halves (even / odd rows): kept only if it helps on one half and does not hurt the other."""
    halves = [list(range(0, len(preds), 2)), list(range(1, len(preds), 2))]
    allidx = list(range(len(preds)))

    def score_on(idx, active, cap=None):
        if not idx:
            return 0.0
        return score([apply_rules(preds[i], active, cap, count) for i in idx], [refs[i] for i in idx])

    enabled: list[str] = []
    gains = []
    for rule in rules:
        off = score_on(allidx, enabled)
        on = score_on(allidx, enabled + [rule])
        da = score_on(halves[0], enabled + [rule]) - score_on(halves[0], enabled)
        db = score_on(halves[1], enabled + [rule]) - score_on(halves[1], enabled)
        keep = _helps(da, db)
        if keep:
            enabled.append(rule)
        gains.append(RuleGain(rule, on, off, da, db, keep))
    chosen = None
    if caps:
        off = score_on(allidx, enabled)
        best = max(caps, key=lambda c: score_on(allidx, enabled, c))  # first of equals: the grid's order
        da = score_on(halves[0], enabled, best) - score_on(halves[0], enabled)
        db = score_on(halves[1], enabled, best) - score_on(halves[1], enabled)
        keep = _helps(da, db)
        chosen = best if keep else None
        gains.append(RuleGain(str(best), score_on(allidx, enabled, best), off, da, db, keep))
    return enabled, chosen, gains


# ---------------------------------------------------------------- fit on dev-select, apply anywhere
@dataclass(frozen=True)
class FittedPostprocess:
    """What fitting chose: rules in order and a length cap. `apply` is pure; it round-trips through JSON, so test and
    dev-report are processed by exactly what dev-select chose, never refitted."""
    rules: tuple[str, ...]
    cap: LengthCap | None
    gains: tuple[RuleGain, ...] = ()
    tokenizer: str = "mecab"  # counts morphemes for a morpheme cap

    def apply(self, text: str) -> str:
        count = _counter(self.tokenizer) if self.cap and self.cap.max_morphemes else (lambda x: len(x.split()))
        return apply_rules(text, self.rules, self.cap, count)

    def apply_all(self, texts: Sequence[str]) -> list[str]:
        return [self.apply(t) for t in texts]

    def describe(self) -> str:
        return f"{len(self.rules)} rule(s): {', '.join(self.rules) or 'none'}; {self.cap or 'no length cap'}"

    def to_dict(self) -> dict:
        cap = None if self.cap is None else {"max_sentences": self.cap.max_sentences,
                                             "max_morphemes": self.cap.max_morphemes}
        gains = [{"rule": g.rule, "on": g.on, "off": g.off, "delta_a": g.delta_a, "delta_b": g.delta_b,
                  "enabled": g.enabled} for g in self.gains]
        return {"rules": list(self.rules), "cap": cap, "gains": gains, "tokenizer": self.tokenizer}

    @classmethod
    def from_dict(cls, d: dict) -> "FittedPostprocess":
        unknown = [r for r in d.get("rules", []) if r not in RULES]
        if unknown:
            raise ValueError(f"unknown post-processing rule(s) {unknown}")
        cap = LengthCap(**d["cap"]) if d.get("cap") else None
        return cls(tuple(d.get("rules", [])), cap, tuple(RuleGain(**g) for g in d.get("gains", [])),
                   d.get("tokenizer", "mecab"))


def _counter(tokenizer: str) -> Callable[[str], int]:
    from dialsum.scoring.tokenize import get_tokenizer

    tok = get_tokenizer(tokenizer)
    return lambda text: len(tok(text))


@dataclass(frozen=True)
class PostProcessor:
    """The post-processing choices to make on dev-select: which of `rules` to keep (ablation) and which length cap."""
    rules: tuple[str, ...]
    ablate: bool = True
    tune_length_cap: bool = True
    fixed_cap: LengthCap | None = None
    tokenizer: str = "mecab"

    def fit(self, texts: Sequence[str], refs: Sequence[Sequence[str]],
            score: Callable[[Sequence[str], Sequence[Sequence[str]]], float]) -> FittedPostprocess:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"unknown post-processing rule(s) {unknown} (known: {', '.join(RULES)})")
        if not self.ablate:
            return FittedPostprocess(tuple(self.rules), self.fixed_cap, (), self.tokenizer)
        count = _counter(self.tokenizer)
        caps = [] if self.fixed_cap or not self.tune_length_cap else length_cap_grid(refs, count)
        rules, cap, gains = ablate(texts, refs, self.rules, score, caps, count)
        return FittedPostprocess(tuple(rules), self.fixed_cap or cap, tuple(gains), self.tokenizer)
