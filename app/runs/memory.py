"""Server side of memory: refuse a config that cannot fit its device's memory before it is queued (trainer/memory.py
works out the need; no torch here)."""

from __future__ import annotations

from pathlib import Path

from app import gpus
from trainer.config import TrainConfig
from trainer.memory import estimate

GiB = 2**30


def cpu_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available(device: str) -> tuple[str, int] | None:
    """(what to call the device, bytes it has free) for a config's `device`; None when we cannot tell."""
    if device == "cpu" or (device == "auto" and not gpus.visible()):
        return ("CPU", mem) if (mem := cpu_available()) is not None else None
    free = gpus.free_memory()
    if device.startswith("cuda:"):
        index = device.split(":")[1]
        return (f"GPU {index}", free[index]) if index in free else None
    if not free:  # CUDA asked for and no GPU: the worker fails with that reason
        return None
    index = max(free, key=free.get)  # the supervisor picks a GPU no other run uses
    return f"GPU {index}", free[index]


def memory_error(cfg: TrainConfig) -> tuple[str, str] | None:
    """(the field to blame, the message) when the config cannot fit its device; None when it can or we cannot tell."""
    device = available(cfg.device)
    if device is None:
        return None
    name, free = device
    need = estimate(cfg)
    on_device = need.total - (need.host_only if name != "CPU" else 0)  # the dataset and checkpoint copy stay on the host
    if on_device <= free:
        return None
    blame = max(
        [("batch_size", need.activations), ("ngf" if cfg.ngf >= cfg.ndf else "ndf", need.model)], key=lambda p: p[1]
    )[0]
    return blame, (
        f"needs about {on_device / GiB:.1f} GiB, the device ({name}) has {free / GiB:.1f} GiB available: "
        f"{need.model / GiB:.1f} GiB for weights, gradients and Adam state, {need.activations / GiB:.1f} GiB for "
        f"activations at batch_size {cfg.batch_size}; use a smaller batch_size, ngf/ndf or image_size"
    )
