"""Which device a run trains on, whether it uses bfloat16 there, and the backend settings made once per process.

The bf16 defaults are measurements, not rules of thumb (figures in docs/gpu.md and the README's Speed section):
- CPU: issue 8 measured bf16 autocast at 1.99x the article's loop at 96x96 batch 64 and 1.53x on the quick preset on a
  CPU with `avx512_bf16`, and 0.46x on one without. This project's AMD EPYC lists `avx512_bf16`, and there, quiet and
  alternating in one process (bench/train_throughput.py), bf16 is faster too: 1.77x the article's loop against fp32's
  1.10x at 96x96 batch 64, 1.37x against 1.24x on the quick preset. But the issue asks that the learning test stay as
  good as fp32 before bf16 is turned on, and it does not: in 300 steps the mean-image distance falls 3% in bf16 against
  25% in fp32 (tests/test_trainer.py::test_it_learns). So on a CPU it stays off by default except with AMX
  (`amx_bf16`), and `bf16=true` opts in.
- CUDA (H100, issue 8): the step runs as CUDA graphs, and there bf16 is faster than fp32 (TF32) at 96x96 (1.18x at
  batch 64, 1.44x at 256, 1.56x at 1024) and slower on the quick preset's 32x32 (0.95x at batch 64); so it is on for
  images of 64px and more. (Eager, as when capture fails, bf16 pays only at 96x96 batch 256: 1.07x; 0.87x at batch 64.)
"""

from __future__ import annotations

import os
from functools import cache

import torch

from trainer.config import TrainConfig

CPU_BF16_FLAGS = ("amx_bf16",)  # not avx512_bf16 alone: faster, but learns worse in the learning test (see above)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"device: {name!r} asked for, but no CUDA GPU is visible (use cpu or auto)")
        if (device.index or 0) >= count:
            raise ValueError(f"device: {name!r} asked for, but only {count} GPU(s) are visible")
        device = torch.device("cuda", device.index or 0)  # an index, so per-device calls and messages are exact
    return device


@cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has bfloat16 matrix units (AMX-BF16)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:  # not Linux: leave bf16 off unless asked for
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bfloat16 autocast: `cfg.bf16` when set, else the measured default for this device (see the module docstring)."""
    if cfg.bf16 is not None:
        return cfg.bf16
    if device.type == "cuda":
        return cfg.image_size >= 64
    return cpu_has_bf16()


def configure(device: torch.device, threads: int | None = None) -> None:
    """Backend settings for training on `device`: `threads` CPU threads (default all cores) on a CPU; on a GPU, cuDNN's
    autotuner (it pays for itself within the first epoch, and is not touched on a CPU, where it costs start-up) and TF32
    stated explicitly: fp32 convolutions and matmuls run as TF32 on Ampere and newer, as PyTorch's cuDNN default already
    does for convolutions."""
    if device.type == "cpu":
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))  # all cores: one thread instead of two is 0.54x
        return
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
