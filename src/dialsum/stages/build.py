"""build: a tiny local model (Llama or BART) and its tokenizer, trained on the run's train dialogues: the CPU
stand-in a configured model without `path` gets, loaded afterwards exactly as a real checkpoint is."""
from __future__ import annotations

from pathlib import Path

from dialsum.config import ModelConfig, TinyModelSpec
from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.stages.common import load_data
from dialsum.stages.keys import base_identity, data_context

KIND, VERSION, CHILD = "build", 1, True


def plan(ctx: RunContext, m: ModelConfig) -> Stage:
    tiny = m.tiny.model_dump(mode="json")
    if ctx.cfg.data.limit:  # smoke mode checks the path, not quality: the stand-in pre-trains at most `limit` steps
        tiny["pretrain_steps"] = min(tiny["pretrain_steps"], ctx.cfg.data.limit)
    return ctx.add(Stage(f"build:{m.name}", KIND, VERSION, "dialsum.stages.build:run",
                         {"tiny": tiny, "family": m.family, "train": ctx.hashes["train"]}, data_context(ctx),
                         child=CHILD))


def base_of(ctx: RunContext, m: ModelConfig) -> tuple[dict, str, list[str]]:
    """(keyed identity of the base model, its path, upstream stage names): a real checkpoint's identity, or for a
    model without `path` this build stage."""
    if m.path is not None:
        return base_identity(m.path, m.revision), m.path, []
    st = plan(ctx, m)
    return {"build": st.key}, str(st.out_dir(ctx.cache) / "model"), [st.name]


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.models.tiny import build_tiny_model

    data = load_data(context)
    return {"path": str(build_tiny_model(out / "model", data.train, TinyModelSpec(**inputs["tiny"]),
                                         inputs["family"]))}
