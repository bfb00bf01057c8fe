"""K samples per train dialogue from the SFT model, through dialsum's own candidate generation (vLLM on a GPU,
transformers on CPU; journaled, so a killed stage resumes), each scored against its reference by the metric."""
from __future__ import annotations

from pathlib import Path

from dialsum.align.preferences import Ranked, rank_samples
from dialsum.align.reward import metric_rewards
from dialsum.config import AlignSpec, DecodingSpec, GenerateSpec, ModelConfig
from dialsum.io.data import Dialogue


def sampling_spec(spec: AlignSpec) -> DecodingSpec:
    return DecodingSpec(name="align-sample", strategy="sample", n=spec.samples, temperature=spec.temperature,
                        top_p=spec.top_p, seed=spec.seed)


def sample_preferences(cfg: ModelConfig, base_path: str, sft_weights: Path, rows: list[Dialogue], spec: AlignSpec,
                       gen: GenerateSpec, store: Path, metric: dict) -> list[Ranked]:
    from dialsum.io.candidates import read_part
    from dialsum.models.generation import generate_candidates

    sampler = cfg.model_copy(update={"decodings": [sampling_spec(spec)]})
    [part] = generate_candidates(sampler, base_path, sft_weights, {"train": rows}, store, gen, work_dir=store.parent)
    by_fname: dict[str, list[str]] = {}
    for c in read_part(part):
        by_fname.setdefault(c.fname, []).append(c.text)
    refs = {d.fname: d.summary for d in rows}
    out: list[Ranked] = []
    for d in rows:
        texts = by_fname.get(d.fname, [])
        out += rank_samples(d.fname, texts, metric_rewards(texts, [refs[d.fname]] * len(texts), metric))
    return out
