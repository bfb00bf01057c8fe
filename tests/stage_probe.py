"""A stage function for engine tests: records what its child process saw (imported by `dialsum.engine.worker`)."""
import os


def record_env(inputs: dict, context: dict, out) -> dict:
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


def record_pid(inputs: dict, context: dict, out) -> dict:
    """The child's pid (stages run together share it); refuses, as a stage with bad input would, when told to."""
    from dialsum.errors import DialsumError

    if inputs.get("fail"):
        raise DialsumError(f"probe {inputs['n']} refused")
    return {"pid": os.getpid(), "n": inputs["n"]}
