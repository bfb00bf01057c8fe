"""The one GPU probe: how many NVIDIA GPUs this process may use.

Two views of one fact. `gpu_count()` reads the driver's /proc entries and CUDA_VISIBLE_DEVICES without importing
torch, for the parent process (which never loads torch, so GPU memory returns to baseline between stages) and for
planning (tuning workers, feasibility). `has_cuda()` asks torch, for a child that has loaded it anyway. Imports
nothing from dialsum.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


FAKE_GPUS = "DIALSUM_FAKE_GPUS"  # tests: the driver "lists" this many GPUs (nothing touches CUDA)


WSL_SMI = "/usr/lib/wsl/lib/nvidia-smi"  # WSL2 ships the driver's tools here, outside PATH


def driver_gpus() -> int:
    """GPUs the NVIDIA driver lists on this machine (or DIALSUM_FAKE_GPUS), before any mask: its /proc entries, or,
    where it has none but CUDA works (WSL2, some containers), what `nvidia-smi -L` lists."""
    fake = os.environ.get(FAKE_GPUS)
    if fake:
        return int(fake)
    if NVIDIA_GPUS.is_dir():
        return len(list(NVIDIA_GPUS.iterdir()))
    smi = shutil.which("nvidia-smi") or (WSL_SMI if os.access(WSL_SMI, os.X_OK) else None)
    return _smi_gpus(smi) if smi else 0


@functools.lru_cache(maxsize=4)
def _smi_gpus(smi: str) -> int:
    """`GPU i: …` lines of `nvidia-smi -L` (once per process and binary); 0 when it fails or hangs."""
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def visible_gpus() -> list[str]:
    """The device ids this process may hand on to its children, in CUDA's order: the user's CUDA_VISIBLE_DEVICES
    entries (read the way CUDA reads them: up to the first invalid one, e.g. "" or "-1"; ids or GPU-UUIDs) or, with
    no mask, 0..n-1; never more than the driver lists."""
    n = driver_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(n)]
    out = []
    for x in visible.split(","):
        if not x.strip() or x.strip().startswith("-"):
            break
        out.append(x.strip())
    return out[:n]


def gpu_count() -> int:
    """GPUs visible to this process: the driver's count, narrowed by CUDA_VISIBLE_DEVICES where that is set."""
    return len(visible_gpus())


def gpu_present() -> bool:
    return gpu_count() > 0


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def visible_gpu_gib() -> float | None:
    """Total memory of the first GPU this process may use (what a stage child gets by default), or None."""
    if not gpu_present() or not has_cuda():
        return None
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30


def visible_gpu_name() -> str | None:
    """The first visible GPU's name as CUDA gives it ("NVIDIA H100 80GB HBM3"), or None."""
    if not gpu_present() or not has_cuda():
        return None
    import torch

    return torch.cuda.get_device_name(0)


def resolve_backend(name: str, quantization: str = "none", family: str = "decoder") -> str:
    """The one backend resolver: the engine that really generates, resolved before a stage is keyed (so `auto` and
    `vllm` share outputs). Seq2seq models always use transformers; `auto` means vLLM where it is installed, except
    at 4 bits (vLLM has no 4-bit loading) and at 8 bits without a GPU (its online fp8 needs CUDA). Never imports
    vLLM (the parent process stays free of torch)."""
    if family == "seq2seq":
        return "hf"
    if name != "auto":
        return name
    if quantization == "4bit" or (quantization == "8bit" and not gpu_present()):
        return "hf"
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
