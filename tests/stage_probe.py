"""A stage function for engine tests: records what its child process saw (imported by `dialsum.engine.worker`)."""
import os


def record_env(inputs: dict, context: dict, out) -> dict:
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
