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


def record_process(inputs: dict, context: dict, out) -> dict:
    """What the child process is: its parent, folder, environment, temp folder, main module, whether torch was
    imported before the stage began (the fork server preloads it); prints to both streams; refuses when told to."""
    import sys
    import tempfile

    from dialsum.errors import DialsumError

    preloaded = "torch" in sys.modules
    print(f"probe {inputs['n']} on stdout")
    print(f"probe {inputs['n']} on stderr", file=sys.stderr)
    if inputs.get("fail"):
        raise DialsumError(f"probe {inputs['n']} refused")
    return {"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "tmp": tempfile.gettempdir(),
            "probe_env": os.environ.get("DIALSUM_PROBE"), "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
            "main": sys.modules["__main__"].__spec__.name, "argv": sys.argv[1:], "torch_preloaded": preloaded}
