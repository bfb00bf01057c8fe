"""The one GPU probe: the driver's GPU count narrowed by CUDA_VISIBLE_DEVICES the way CUDA reads it."""
from __future__ import annotations

import os

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
    monkeypatch.setattr(hardware, "WSL_SMI", str(tmp_path / "absent-smi"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hardware.gpu_count() == 0 and not hardware.gpu_present()


def test_a_driver_without_proc_entries_is_asked_through_nvidia_smi(tmp_path, monkeypatch):
    """WSL2 (and some containers): CUDA works but /proc/driver/nvidia/gpus does not exist; `nvidia-smi -L` lists
    the GPUs. Before, every model of 1B parameters or more was refused there as if the machine had no GPU."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\n[ \"$1\" = -L ] && printf 'GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-8f1c)\\n"
                   "GPU 1: NVIDIA GeForce RTX 3090 (UUID: GPU-77aa)\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setattr(hardware, "NVIDIA_GPUS", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(smi.parent))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert hardware.driver_gpus() == 2 and hardware.gpu_count() == 1 and hardware.gpu_present()


@pytest.mark.parametrize("mask,workers,share,want", [
    (None, 2, False, ["0", "1"]), ("3,1", 2, False, ["3", "1"]), ("2", 1, False, ["2"]),
    ("3,1", 4, True, ["3", "1", "3", "1"]), ("", 3, False, [])])
def test_tune_workers_get_the_gpus_of_the_users_mask(monkeypatch, mask, workers, share, want):
    from dialsum.tune.study import worker_devices

    monkeypatch.setenv(hardware.FAKE_GPUS, "4")
    if mask is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    assert worker_devices(workers, hardware.visible_gpus(), share) == want


def test_more_tune_workers_than_gpus_is_refused_before_any_work(tmp_path):
    from conftest import run_cli

    tune_yaml = tmp_path / "tune.yaml"
    cfg = tmp_path / "run.yaml"
    cfg.write_text((hardware.Path(__file__).parents[1] / "configs" / "default.yaml").read_text()
                   .replace("../data/sample", str(hardware.Path(__file__).parents[1] / "data" / "sample"))
                   .replace("../runs", str(tmp_path / "runs")).replace("models/", str(
                       hardware.Path(__file__).parents[1] / "configs" / "models") + "/"))
    tune_yaml.write_text(f"study: s\nrun_config: {cfg}\n")
    r = run_cli("tune", "--config", str(tune_yaml), "--workers", "3", "--trials", "3",
                env={hardware.FAKE_GPUS: "4", "CUDA_VISIBLE_DEVICES": "1,2"})
    assert r.returncode == 2 and "--workers 3 but 2 GPU(s) visible (1,2)" in r.stderr and "--share-gpus" in r.stderr
    assert not (tmp_path / "runs").exists()  # no study folder, no journal


@pytest.mark.parametrize("mask,gpus,want", [(None, 1, "0"), ("2,3", 1, "2"), ("3,1,0", 2, "3,1"), ("", 1, "")])
def test_a_stage_child_sees_the_gpus_the_parent_assigned(tmp_path, monkeypatch, mask, gpus, want):
    """One GPU per stage child by default (a generate stage asks for tensor_parallel_size), taken from the user's
    mask; the driver's GPU list is faked (DIALSUM_FAKE_GPUS=4), the child really is a child process."""
    from dialsum.engine.core import Engine, Stage

    tests = hardware.Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(hardware.FAKE_GPUS, "4")
    if mask is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    stage = Stage("probe:x", "probe", 1, "stage_probe:record_env", {"mask": mask, "gpus": gpus}, {"gpus": gpus},
                  child=True)
    result = Engine(tmp_path / "cache", tmp_path / "run").run(stage)
    assert result["CUDA_VISIBLE_DEVICES"] == want


@pytest.mark.parametrize("precision,cuda,bf16,want", [
    ("auto", True, True, "bfloat16"), ("auto", True, False, "float16"), ("auto", False, False, "float32"),
    ("fp16", True, True, "float16"), ("bf16", True, True, "bfloat16"), ("fp32", True, True, "float32")])
def test_vllm_serves_in_the_compute_dtype_training_and_merging_use(monkeypatch, precision, cuda, bf16, want):
    """`precision: auto` on a card without bf16 (T4, V100) trains and merges in fp16; vLLM refuses bf16 there, so it
    must be asked for fp16 too (it was always asked for bf16 on a GPU)."""
    import torch

    from dialsum.config import ModelConfig
    from dialsum.models import loading
    from dialsum.models.vllm_backend import vllm_dtype

    monkeypatch.setattr(loading, "has_cuda", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    cfg = ModelConfig(name="m", path="org/m", precision=precision, target_modules=["q_proj"])
    assert vllm_dtype(cfg) == want
    assert str(loading.compute_dtype(precision)).removeprefix("torch.") == want


def test_vllm_is_asked_for_its_online_fp8_method_by_its_current_name():
    """`fp8` is a deprecated alias in vLLM 0.32; dialsum asks for `fp8_per_tensor`, which the installed vLLM lists."""
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    from dialsum.models.vllm_backend import ONLINE_FP8

    assert ONLINE_FP8 == "fp8_per_tensor" and ONLINE_FP8 in QUANTIZATION_METHODS
