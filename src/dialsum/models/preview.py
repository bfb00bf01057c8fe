"""What a model is trained on and stops on, shown before any GPU time is spent (`dialsum preview`), and how much of
the data its tokenizer truncates (`--lengths`, and every run's train stage).

`example_view` renders one training row the way training encodes it (dialsum.models.encoding.encode_training_example) and
reports the invariants that decide whether a real checkpoint learns to stop: the last trained token is one the
generation stops on, BOS appears at most once. `truncation` measures, with the model's own tokenizer, the share of
dialogues longer than `max_input_tokens` and of references longer than `max_new_tokens`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dialsum.config import ModelConfig
from dialsum.io.data import Dialogue
from dialsum.errors import DialsumError
from dialsum.logs import log
from dialsum.models.prompts import IGNORE_INDEX

DIALOGUE_LIMIT = 0.01   # warn above 1 % of dialogues cut
SUMMARY_LIMIT = 0.005   # ... or 0.5 % of references


@dataclass
class ModelTokenizer:
    """A model's tokenizer prepared as dialsum prepares it, the generation config's eos ids, where it came from,
    and what it is: `real` (the checkpoint's own files) or `stand-in` (built from facts.json or for a tiny model:
    its counts are not the real tokenizer's)."""
    tokenizer: object
    generation_eos: list[int]
    source: str
    kind: str = "real"


def tokenizer_for(cfg: ModelConfig, tokenizer_dir: Path | None, texts: list[str]) -> ModelTokenizer:
    """`tokenizer_dir`: a ../shared/checkpoints folder (its real tokenizer, else the stand-in built from its facts),
    or any folder with tokenizer files; without it, the model's own path (a cached hub id or a local folder), or the
    tiny model's tokenizer trained on `texts`."""
    from dialsum.models.loading import prepare_tokenizer

    if tokenizer_dir is not None:
        folder = Path(tokenizer_dir)
        if (folder / "facts.json").is_file():
            from dialsum.models.standins import build_standin_tokenizer, generation_eos, has_real_tokenizer, load_facts

            tok = build_standin_tokenizer(folder, texts)
            real = has_real_tokenizer(folder)
            how = "real tokenizer files" if real else "stand-in built from facts.json"
            return ModelTokenizer(prepare_tokenizer(tok, cfg), generation_eos(tok, load_facts(folder), folder),
                                  f"{folder} ({how})", "real" if real else "stand-in")
        return from_path(str(folder), cfg, None)
    if cfg.path is None:
        from dialsum.models.tiny import build_tokenizer

        tok = build_tokenizer(texts, cfg.tiny.vocab_size, cfg.tiny.with_tags)
        return ModelTokenizer(prepare_tokenizer(tok, cfg), [tok.eos_token_id], "tiny model tokenizer (built here)",
                              "stand-in")
    return from_path(cfg.path, cfg, cfg.revision)


def from_path(path: str, cfg: ModelConfig, revision: str | None) -> ModelTokenizer:
    """The tokenizer of a model folder or cached hub id, as dialsum loads it, and its generation eos ids."""
    from transformers import AutoConfig, GenerationConfig

    from dialsum.models.loading import check_source, load_tokenizer

    check_source(path)
    tok = load_tokenizer(path, cfg.model_copy(update={"revision": revision}))
    try:
        eos = GenerationConfig.from_pretrained(path, revision=revision).eos_token_id
    except OSError:
        eos = getattr(AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=cfg.trust_remote_code),
                      "eos_token_id", None)
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    return ModelTokenizer(tok, eos, path)


def stops_of(mt: ModelTokenizer, cfg: ModelConfig) -> list[int]:
    from dialsum.models.encoding import model_stops

    return model_stops(mt.tokenizer, mt.generation_eos, cfg)


def example_view(mt: ModelTokenizer, cfg: ModelConfig, row: Dialogue) -> dict:
    """One training row as training encodes it, with the checks that matter for a real checkpoint."""
    from dialsum.models.encoding import encode_input, encode_training_example

    tok = mt.tokenizer
    stops = stops_of(mt, cfg)
    ex = encode_training_example(tok, row, cfg, stops)
    ids, labels = ex["input_ids"], ex["labels"]
    trained = [i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX] if cfg.family == "decoder" else \
        [lab for lab in labels if lab != IGNORE_INDEX]
    prompt = encode_input(tok, row.dialogue, cfg)
    whole = encode_input(tok, row.dialogue, cfg.model_copy(update={"max_input_tokens": 10 ** 9}))
    kept_text = tok.decode(prompt, skip_special_tokens=True)
    turns = [t for t in row.dialogue.split("\n") if t.strip()]
    cut_turns = sum(1 for t in turns if " ".join(t.split()) not in " ".join(kept_text.split()))
    last = trained[-1] if trained else None
    seen = ids if cfg.family == "decoder" else prompt
    shown = list(zip(ids, [lab != IGNORE_INDEX for lab in labels])) if cfg.family == "decoder" else \
        [(i, True) for i in trained]
    return {
        "model": cfg.name, "family": cfg.family, "tokenizer": mt.source, "fname": row.fname,
        "bos_token": tok.bos_token, "bos_count": sum(1 for i in seen if tok.bos_token_id is not None
                                                     and i == tok.bos_token_id),
        "last_trained_token": tok.convert_ids_to_tokens(last) if last is not None else None,
        "last_trained_is_stop": last in stops,
        "stop_token_ids": stops, "stop_tokens": tok.convert_ids_to_tokens(stops),
        "generation_eos_ids": mt.generation_eos,
        "prompt_tokens": len(prompt), "target_tokens": len(trained), "tokenizer_kind": mt.kind,
        "cut_tokens": len(whole) - len(prompt), "cut_turns": cut_turns if len(whole) > len(prompt) else 0,
        "training_text": tok.decode(ids if cfg.family == "decoder" else prompt, skip_special_tokens=False),
        "target_text": tok.decode(trained, skip_special_tokens=False),
        "generation_prompt": tok.decode(prompt, skip_special_tokens=False),
        "tokens": [[int(i), tok.convert_ids_to_tokens(int(i)), lab != IGNORE_INDEX] for i, lab in zip(ids, labels)]
        if cfg.family == "decoder" else [[int(i), tok.convert_ids_to_tokens(int(i)), True] for i in trained],
        "decoded": decoded_pieces(tok, shown),
    }


def decoded_pieces(tok, ids: list[tuple[int, bool]]) -> list[list]:
    """[text, trained] per token, byte-level tokens joined until they decode to whole characters (Korean is several
    byte tokens in a byte-level BPE), so the view reads as text, not as `ëĭ¹`-style pieces."""
    out, acc, trained = [], [], False
    for i, t in ids:
        acc.append(int(i))
        trained = trained or t
        text = tok.decode(acc, skip_special_tokens=False)
        if "\ufffd" not in text or len(acc) >= 4:
            out.append([text, trained])
            acc, trained = [], False
    if acc:
        out.append([tok.decode(acc, skip_special_tokens=False), trained])
    return out


def format_view(v: dict) -> str:
    """The human view: the prompt (with what the length limit cut), the decoded tokens with the trained ones in
    [brackets], then the checks."""
    shown = lambda text: text.replace(" ", "␣").replace("\n", "⏎") or "∅"  # noqa: E731
    toks = " ".join(f"[{shown(d)}]" if trained else shown(d) for d, trained in v["decoded"])
    cut = (f"\n… [cut: {v['cut_turns']} turn(s), {v['cut_tokens']} tokens over max_input_tokens]"
           if v["cut_tokens"] else "")
    return "\n".join([
        f"model {v['model']} ({v['family']}), tokenizer: {v['tokenizer']}, row {v['fname']}",
        "--- generation prompt ---", v["generation_prompt"] + cut,
        "--- trained target ---", v["target_text"],
        "--- tokens, decoded ([trained]; ␣ space, ⏎ newline; --json has each token's piece and id) ---", toks,
        "--- checks ---",
        f"stop ids {v['stop_token_ids']} = {v['stop_tokens']} (generation config eos {v['generation_eos_ids']})",
        f"last trained token {v['last_trained_token']!r}: {'a stop token' if v['last_trained_is_stop'] else 'NOT a stop token'}",
        f"BOS {v['bos_token']!r} appears {v['bos_count']} time(s); prompt {v['prompt_tokens']} tokens, "
        f"target {v['target_tokens']} tokens",
    ])


def token_lengths(mt: ModelTokenizer, cfg: ModelConfig, rows: list[Dialogue]) -> tuple[list[int], list[int] | None]:
    """Each row's input tokens and trained target tokens (None when the rows have no references), before any cut:
    counted the way training encodes them (also the time plan's token counts)."""
    from dialsum.models.prompts import adds_bos, render_prompt, render_target
    from dialsum.models.seq2seq import _adds_nothing
    from dialsum.models.encoding import style_of

    tok = mt.tokenizer
    if cfg.family == "decoder":  # as prompts.encode_text counts: BOS added once where the tokenizer adds one
        style = style_of(cfg)
        enc = tok([render_prompt(tok, d.dialogue, style) for d in rows], add_special_tokens=False)["input_ids"]
        bos = tok.bos_token_id if adds_bos(tok) else None
        n_in = [len(x) + (1 if bos is not None and (not x or x[0] != bos) else 0) for x in enc]
    else:  # as seq2seq.encode_source counts: the tokenizer's own specials, or the <s> ... </s> dialsum adds
        enc = tok([cfg.source_prefix + d.dialogue for d in rows], add_special_tokens=True)["input_ids"]
        wrap = 2 if _adds_nothing(tok) else 0
        n_in = [len(x) + wrap for x in enc]
    with_sum = [d for d in rows if d.summary]
    if not with_sum:
        return n_in, None
    if cfg.family == "decoder":  # as prompts.target_ids: up to the first stop id, else EOS appended
        stops = stops_of(mt, cfg)
        enc = tok([render_target(tok, d.dialogue, d.summary, style) for d in with_sum],
                  add_special_tokens=False)["input_ids"]
        n_out = [next((k + 1 for k, t in enumerate(x) if t in stops), len(x) + 1) for x in enc]
    else:  # as seq2seq.encode_target: the tokenizer's target encoding, EOS appended if missing
        enc = tok(text_target=[d.summary for d in with_sum], add_special_tokens=True)["input_ids"]
        n_out = [len(x) + (0 if x and x[-1] == tok.eos_token_id else 1) for x in enc]
    return n_in, n_out


def truncation(mt: ModelTokenizer, cfg: ModelConfig, rows_by_split: dict[str, list[Dialogue]]) -> list[dict]:
    """Per split: the share of dialogues whose input exceeds max_input_tokens and of references whose trained
    target exceeds max_new_tokens (None where the split has no references), measured before any cut."""
    out = []
    for split, rows in rows_by_split.items():
        if not rows:
            continue
        n_in, n_out = token_lengths(mt, cfg, rows)
        summary_share = None if n_out is None else sum(n > cfg.max_new_tokens for n in n_out) / len(n_out)
        out.append({"model": cfg.name, "split": split, "rows": len(rows), "tokenizer": mt.kind,
                    "dialogue_truncated": sum(n > cfg.max_input_tokens for n in n_in) / len(n_in),
                    "summary_truncated": summary_share, "max_input_tokens": cfg.max_input_tokens,
                    "max_new_tokens": cfg.max_new_tokens,
                    "dialogue_tokens_p99": sorted(n_in)[int(0.99 * (len(n_in) - 1))]})
    return out


def truncation_problems(rows: list[dict]) -> list[str]:
    """One line per split over the limits, naming the numbers and the setting to change."""
    out = []
    for r in rows:
        if r["dialogue_truncated"] > DIALOGUE_LIMIT:
            out.append(f"model {r['model']}: {r['dialogue_truncated']:.1%} of {r['split']} dialogues exceed "
                       f"max_input_tokens {r['max_input_tokens']} (99th percentile {r['dialogue_tokens_p99']} tokens); "
                       f"raise max_input_tokens")
        if r["summary_truncated"] is not None and r["summary_truncated"] > SUMMARY_LIMIT:
            out.append(f"model {r['model']}: {r['summary_truncated']:.1%} of {r['split']} references exceed "
                       f"max_new_tokens {r['max_new_tokens']}; raise max_new_tokens")
    return out


def competition_files(data_dir: Path) -> dict[str, list[Dialogue]]:
    """Every CSV of dialogues in a folder (train.csv, dev.csv, test.csv, or others like dev_200.csv), by file stem."""
    from dialsum.io.data import load_dialogues, read_table

    out = {}
    for f in sorted(Path(data_dir).glob("*.csv")):
        header, _ = read_table(f)
        if "dialogue" not in header:
            continue
        out[f.stem] = load_dialogues(f, with_summary="summary" in header)
    if not out:
        raise DialsumError(f"{data_dir}: no CSV with a `dialogue` column")
    return out


def check_truncation(mt: ModelTokenizer, cfg: ModelConfig, rows: dict[str, list[Dialogue]], out_dir: Path) -> list[dict]:
    """Before training: measure truncation on every split, write out_dir/truncation.json, warn, or stop when
    `train.on_truncation` is `error`."""
    from dialsum.io.files import atomic_write_json

    measured = truncation(mt, cfg, rows)
    problems = truncation_problems(measured)
    atomic_write_json(Path(out_dir) / "truncation.json", {"splits": measured, "problems": problems})
    for line in problems:
        log(f"warning: {line} (train.on_truncation: {cfg.train.on_truncation})", logging.WARNING)
    if problems and cfg.train.on_truncation == "error":
        raise DialsumError(f"{problems[0]} (train.on_truncation: error)")
    return measured
