"""Post-processing rules: small pure text -> text functions, applied in a configured order.

Each rule must earn its place: `ablate` adds rules one at a time (in order) and keeps a rule, and then a length cap,
only when its held-out gain on the fitting rows exceeds one standard error (k-fold cross-validation for the cap,
which is chosen from a grid), so a gain that is noise on a small dev set does not reach the submission.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dialsum.scoring.bootstrap import kfold as folds, one_se_gain

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


def check_rules(rules: Sequence[str], where: str = "post-processing") -> None:
    """The one check of rule names (config, fitted.json, --rules): a ValueError naming the unknown ones."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"{where}: unknown rule(s) {unknown} (known: {', '.join(RULES)})")


def apply_rules(text: str, rules: Sequence[str], cap: LengthCap | None = None,
                count: Callable[[str], int] = lambda x: len(x.split())) -> str:
    """Apply the named rules in order, then the length cap; an empty result falls back to the input."""
    out = text
    check_rules(rules)
    for name in rules:
        out = RULES[name](out)
    if cap is not None:
        out = cap_length(out, cap, count)
    return out if out.strip() else text


@dataclass(frozen=True)
class RuleGain:
    """One fitting step: the rule (or the length cap) tried on top of what was kept before it, its score on all
    fitting rows with and without it, its held-out gain with one standard error, whether it was kept, and why."""
    rule: str
    on: float
    off: float
    gain: float
    se: float
    enabled: bool
    why: str = ""

    @property
    def delta(self) -> float:
        return self.on - self.off


FOLDS, SEEDS = 5, (0, 1, 2)


def _judge(rule: str, on: np.ndarray, off: np.ndarray, held_gain: np.ndarray) -> RuleGain:
    """Kept only when the held-out gain (mean over rows of a per-row gain) exceeds one standard error of it."""
    n = len(held_gain)
    g = one_se_gain(held_gain)
    return RuleGain(rule, float(on.mean()) if n else 0.0, float(off.mean()) if n else 0.0, g.gain, g.se, g.keep, g.why)


def ablate(preds: Sequence[str], refs: Sequence[Sequence[str]], rules: Sequence[str],
           rows_score: Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[float]],
           caps: Sequence[LengthCap] = (), count: Callable[[str], int] = lambda x: len(x.split()),
           k: int = FOLDS, seeds: Sequence[int] = SEEDS) -> tuple[list[str], LengthCap | None, list[RuleGain]]:
    """Greedy forward selection of rules in the given order, then a length cap from `caps`, each kept only when its
    held-out gain beats one standard error (the ensemble's rule; small dev sets keep the simpler choice).

    `rows_score(preds, refs)` gives each row's leaderboard score (the corpus score is their mean). A rule has nothing
    to fit, so every row is held out for it: its gain is the mean per-row change. The cap is chosen from a grid, so
    the whole choice is judged by nested cross-validation (`nested_cap_choice`): a cap is kept only when the
    selection's gain on outer folds it never saw exceeds one standard error."""
    n = len(preds)

    def rows(active, cap=None) -> np.ndarray:
        return np.asarray(rows_score([apply_rules(p, active, cap, count) for p in preds], refs), dtype=np.float64)

    enabled: list[str] = []
    gains = []
    current = rows(enabled)
    for rule in rules:
        trial = rows(enabled + [rule])
        g = _judge(rule, trial, current, trial - current)
        if g.enabled:
            enabled.append(rule)
            current = trial
        gains.append(g)
    chosen = None
    if caps and n >= 2:
        by_cap = np.asarray([rows(enabled, c) for c in caps])
        pick, outer = nested_cap_choice(by_cap, current, k, seeds)
        shown = pick if pick is not None else max(range(len(caps)), key=lambda c: (by_cap[c].mean(), -c))
        g = _judge(str(caps[shown]), by_cap[shown], current, outer)
        chosen = caps[pick] if g.enabled and pick is not None else None
        gains.append(g if pick is not None or not g.enabled else
                     RuleGain(g.rule, g.on, g.off, g.gain, g.se, False, "the selection keeps no cap on all rows"))
    return enabled, chosen, gains


def _cap_choice(by_cap: np.ndarray, base: np.ndarray, rows: np.ndarray, k: int, seeds: Sequence[int]) -> int | None:
    """The selection run on `rows` alone: the cap best on the other folds, judged on each held-out fold (repeated over
    seeds), kept only when that held-out gain exceeds one standard error; then the cap best on all of `rows`."""
    n = len(rows)
    if n < 2:
        return None
    held = np.zeros(n)
    for seed in seeds:
        for part in folds(n, min(k, n), seed):
            train = rows[np.setdiff1d(np.arange(n), part)]
            best = max(range(len(by_cap)), key=lambda c: (by_cap[c][train].mean(), -c))  # ties: grid order
            held[part] += by_cap[best][rows[part]] - base[rows[part]]
    if not one_se_gain(held / len(seeds)).keep:
        return None
    return max(range(len(by_cap)), key=lambda c: (by_cap[c][rows].mean(), -c))


def nested_cap_choice(by_cap: np.ndarray, base: np.ndarray, k: int = FOLDS,
                      seeds: Sequence[int] = SEEDS) -> tuple[int | None, np.ndarray]:
    """Nested cross-validation of the whole cap selection: inside each outer fold the selection (`_cap_choice`, with
    its own inner folds and one-SE rule) runs on the other rows only, and its choice, a cap or none, is scored on the
    held-out rows. Returns the selection's choice on all rows and each row's outer held-out gain (the caller keeps
    the cap only when that gain exceeds one standard error: the winner of a grid must pay for having been chosen)."""
    n = by_cap.shape[1]
    outer = np.zeros(n)
    for seed in seeds:
        for part in folds(n, min(k, n), seed + 100):  # other splits than the inner ones
            pick = _cap_choice(by_cap, base, np.setdiff1d(np.arange(n), part), k, seeds)
            if pick is not None:
                outer[part] += by_cap[pick][part] - base[part]
    return _cap_choice(by_cap, base, np.arange(n), k, seeds), outer / len(seeds)


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
        gains = [{"rule": g.rule, "on": g.on, "off": g.off, "gain": g.gain, "se": g.se, "enabled": g.enabled,
                  "why": g.why} for g in self.gains]
        return {"rules": list(self.rules), "cap": cap, "gains": gains, "tokenizer": self.tokenizer}

    @classmethod
    def from_dict(cls, d: dict) -> "FittedPostprocess":
        check_rules(d.get("rules", []), "fitted post-processing")
        cap = LengthCap(**d["cap"]) if d.get("cap") else None
        known = set(RuleGain.__dataclass_fields__)
        gains = tuple(RuleGain(**{k: v for k, v in g.items() if k in known} | {"gain": g.get("gain", 0.0),
                                                                              "se": g.get("se", 0.0)})
                      for g in d.get("gains", []))  # a fit written by an older dialsum has no gain/se
        return cls(tuple(d.get("rules", [])), cap, gains, d.get("tokenizer", "mecab"))


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
            rows_score: Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[float]]) -> FittedPostprocess:
        """Choose on (texts, refs); `rows_score` gives each row's leaderboard score (scoring.metric.Metric.rows)."""
        check_rules(self.rules)
        if not self.ablate:
            return FittedPostprocess(tuple(self.rules), self.fixed_cap, (), self.tokenizer)
        count = _counter(self.tokenizer)
        caps = [] if self.fixed_cap or not self.tune_length_cap else length_cap_grid(refs, count)
        rules, cap, gains = ablate(texts, refs, self.rules, rows_score, caps, count)
        return FittedPostprocess(tuple(rules), self.fixed_cap or cap, tuple(gains), self.tokenizer)
