"""The one GPU probe: how many NVIDIA GPUs this process may use.

Two views of one fact. `gpu_count()` reads the driver's /proc entries and CUDA_VISIBLE_DEVICES without importing
torch, for the parent process (which never loads torch, so GPU memory returns to baseline between stages) and for
planning (tuning workers, feasibility). `has_cuda()` asks torch, for a child that has loaded it anyway. Imports
nothing from dialsum.
"""
from __future__ import annotations

import os
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def gpu_count() -> int:
    """GPUs visible to this process: the driver's count, narrowed by CUDA_VISIBLE_DEVICES where that is set."""
    n = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return n
    listed = 0
    for x in visible.split(","):  # CUDA reads ids (or GPU-UUIDs) up to the first invalid one, e.g. "" or "-1"
        if not x.strip() or x.strip().startswith("-"):
            break
        listed += 1
    return min(n, listed)


def gpu_present() -> bool:
    return gpu_count() > 0


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
