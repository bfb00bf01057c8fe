"""Candidate generation for one model: every configured decoding over the dev and test dialogues.

Backends share one interface: `hf` (transformers `generate`, batched) and `vllm` (see vllm_backend.py). Each
(model, decoding) part is resumable: finished chunks are journaled and the part is written atomically at the end.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from dialsum.io.candidates import Candidate, Journal, part_path, write_part
from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig
from dialsum.io.data import Dialogue
from dialsum.errors import DialsumError
from dialsum.hardware import resolve_backend
from dialsum.logs import log, progress_enabled
from dialsum.models.encoding import encode_input


class HFEngine:
    """transformers model (+ LoRA adapter) kept loaded across the decodings of one model."""

    def __init__(self, cfg: ModelConfig, base_path: str, adapter_dir: Path | None, batch_size: int,
                 quantization: str = "none"):
        from dialsum.models.loading import load_for_inference

        from dialsum.models.encoding import model_stops

        self.tokenizer, model = load_for_inference(cfg, base_path, adapter_dir, quantization=quantization)
        self.model = model.eval()
        self.cfg = cfg
        self.batch_size = batch_size
        self.stops = model_stops(self.tokenizer, model.generation_config.eos_token_id, cfg)

    def run(self, prompts: list[list[int]], spec: DecodingSpec, progress,
            seed_offset: int = 0) -> list[list[tuple[str, float | None]]]:
        from dialsum.models.hf_backend import generate_hf

        from dialsum.models.encoding import generation_extras

        return generate_hf(self.model, self.tokenizer, prompts, spec, self.cfg.max_new_tokens, self.batch_size,
                           progress, seed_offset, generation_extras(self.tokenizer, self.cfg), stops=self.stops)

    def close(self) -> None:
        del self.model


def make_engine(backend: str, cfg: ModelConfig, base_path: str, adapter_dir: Path | None, gen: GenerateSpec,
                work_dir: Path):
    backend = resolve_backend(backend, gen.quantization, cfg.family)  # vLLM: decoders only
    if backend == "vllm":
        from dialsum.models.vllm_backend import VLLMEngine

        return VLLMEngine(cfg, base_path, adapter_dir, gen, work_dir)
    if backend == "hf":
        return HFEngine(cfg, base_path, adapter_dir, gen.batch_size, gen.quantization)
    raise DialsumError(f"unknown generation backend {backend!r}")


def generate_candidates(cfg: ModelConfig, base_path: str, adapter_dir: Path | None,
                        rows_by_split: dict[str, list[Dialogue]], store: Path, gen: GenerateSpec,
                        backend: str | None = None, work_dir: Path | None = None, chunk: int = 64,
                        adapter_label: str | None = None) -> list[Path]:
    """Write one part per decoding into `store`; parts already complete are skipped.

    The dialogues are cut into fixed chunks (same boundaries on every run); each finished chunk is journaled whole,
    and sampling seeds depend on (decoding seed, chunk, batch) only, so a run resumed after a kill regenerates
    exactly the missing chunks and ends with the same candidates as an uninterrupted one.
    """
    store = Path(store)
    todo = [d for d in cfg.decodings if not part_path(store, cfg.name, d.name).exists()]
    paths = [part_path(store, cfg.name, d.name) for d in cfg.decodings]
    if not todo:
        return paths
    items = [(split, d) for split, rows in rows_by_split.items() for d in rows]
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    label = adapter_label if adapter_label is not None else str(adapter_dir or "")
    engine = None
    try:
        for spec in todo:
            path = part_path(store, cfg.name, spec.name)
            journal = Journal(path)
            done = journal.load()
            missing = [i for i in range(len(chunks)) if i not in done]
            if done and missing:
                log(f"generate {cfg.name}/{spec.name}: resuming from its journal, "
                    f"{sum(len(chunks[i]) for i in done)} of {len(items)} dialogues already generated")
            if missing and engine is None:
                engine = make_engine(backend or gen.backend, cfg, base_path, adapter_dir, gen,
                                     work_dir or store.parent)
            if missing:
                bar = tqdm(total=len(items), initial=len(items) - sum(len(chunks[i]) for i in missing),
                           desc=f"generate {cfg.name}/{spec.name}", unit="dlg", disable=not progress_enabled())
                for ci in missing:
                    part = chunks[ci]
                    prompts = [encode_input(engine.tokenizer, d.dialogue, cfg) for _, d in part]
                    outs = engine.run(prompts, spec, bar, seed_offset=ci)
                    cands = [Candidate(d.fname, split, text, cfg.name, label, spec.name, k, spec.seed, lp)
                             for (split, d), outs_d in zip(part, outs) for k, (text, lp) in enumerate(outs_d)]
                    journal.append(ci, cands)
                    done[ci] = cands
                bar.close()
            write_part(path, [c for i in range(len(chunks)) for c in done[i]])
            journal.remove()
    finally:
        if engine is not None:
            engine.close()
    return paths
