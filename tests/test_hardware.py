"""The one GPU probe: the driver's GPU count narrowed by CUDA_VISIBLE_DEVICES the way CUDA reads it."""
from __future__ import annotations

import pytest

from dialsum import hardware


@pytest.mark.parametrize("visible,want", [(None, 4), ("", 0), ("-1", 0), ("0", 1), ("1,3", 2), ("0,1,2,3,4,5", 4),
                                          ("2,-1,3", 1), ("GPU-8f1c,GPU-77aa", 2)])
def test_gpu_count_follows_cuda_visible_devices(tmp_path, monkeypatch, visible, want):
    gpus = tmp_path / "gpus"
    for i in range(4):  # the driver lists one folder per GPU (its PCI address)
        (gpus / f"0000:{i:02x}:00.0").mkdir(parents=True)
    monkeypatch.setattr(hardware, "NVIDIA_GPUS", gpus)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert hardware.gpu_count() == want
    assert hardware.gpu_present() == (want > 0)


def test_no_driver_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "NVIDIA_GPUS", tmp_path / "absent")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hardware.gpu_count() == 0 and not hardware.gpu_present()
