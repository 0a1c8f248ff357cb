"""The server's GPUs, and which one a process gets: one place for the supervisor, the memory check and sampling.

The inventory is nvidia-smi's (the server never imports torch), narrowed to what the server's own
CUDA_VISIBLE_DEVICES leaves it: a server started with CUDA_VISIBLE_DEVICES=1 on a four-GPU machine has GPU "1" only.
GPUs are named by nvidia-smi's index throughout (the form's `cuda:N`, /api/machine, a worker's CUDA_VISIBLE_DEVICES);
a process the server starts gets CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA numbers them the way nvidia-smi does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache

QUERY = "index,uuid,memory.total,memory.used"


@dataclass(frozen=True)
class Gpu:
    index: str  # nvidia-smi's
    uuid: str
    free: int  # bytes, when it was listed


# What a worker's GPUs are to the server (Worker.gpu, `place`, `idle`): its CUDA_VISIBLE_DEVICES, nvidia-smi indexes such
# as "0" or "0,1", or one of these two.
ON_CPU = ""  # none visible: it trains on the CPU
UNKNOWN = None  # not set by this server (a re-attached worker, or none to give): it may hold any GPU


class PlacementError(ValueError):
    """A config asks for a GPU this server does not have."""


def _query() -> list[Gpu]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True, text=True,
            timeout=10,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit() and parts[2].isdigit() and parts[3].isdigit():
            gpus.append(Gpu(parts[0], parts[1], (int(parts[2]) - int(parts[3])) * 2**20))
    return gpus


def _allowed(gpus: list[Gpu], mask: str | None) -> list[Gpu]:
    """The GPUs CUDA_VISIBLE_DEVICES=`mask` leaves, in its order: indices or (prefixes of) UUIDs; as CUDA does, an
    entry that names no GPU ends the list, and an empty mask hides them all."""
    if mask is None:
        return gpus
    kept = []
    for entry in (e.strip() for e in mask.split(",")):
        match = [g for g in gpus if entry and (g.index == entry or (entry.startswith("GPU-") and g.uuid.startswith(entry)))]
        if not match or match[0] in kept:
            break
        kept.append(match[0])
    return kept


@cache
def _visible(mask: str | None) -> tuple[str, ...]:
    return tuple(g.index for g in _allowed(_query(), mask))


def visible() -> tuple[str, ...]:
    """The indices of the GPUs this server may use (listed once per CUDA_VISIBLE_DEVICES value)."""
    return _visible(os.environ.get("CUDA_VISIBLE_DEVICES"))


def free_memory() -> dict[str, int]:
    """Free memory of each GPU this server may use, in bytes, now."""
    return {g.index: g.free for g in _allowed(_query(), os.environ.get("CUDA_VISIBLE_DEVICES"))}


def place(device: str, busy: Collection[str | None], count: int = 1) -> tuple[str | None, str]:
    """Where a worker for a config's `device` trains: (its CUDA_VISIBLE_DEVICES, UNKNOWN to leave the server's; the
    device it then names). `busy`: the GPUs other workers hold ("0,1" for a worker on two). `cuda` and `auto` take a
    GPU no worker holds, else the first; `cuda:N` takes GPU N, which must be one of the server's. A run on `count`
    GPUs (its `gpus`, trainer/distributed.py) takes that many, free ones first; its ranks each use one."""
    gpus = visible()
    if device == "cpu" or (device == "auto" and not gpus):
        return ON_CPU, "cpu"
    if not gpus:  # CUDA asked for and none visible: the worker fails with the reason
        return UNKNOWN, device
    if count > len(gpus):
        raise PlacementError(f"gpus: {count} asked for, this server has {len(gpus)} ({', '.join(gpus)})")
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        if index not in gpus:
            raise PlacementError(f"device {device}: this server's GPUs are {', '.join(gpus)} (CUDA_VISIBLE_DEVICES)")
        if count > 1:
            raise PlacementError(f"device {device}: a run on {count} GPUs takes device cuda or auto")
        return index, "cuda:0"
    held = {g for gpu in busy if gpu for g in gpu.split(",")}
    chosen = ([g for g in gpus if g not in held] + [g for g in gpus if g in held])[:count]
    return ",".join(chosen), "cuda:0"


def idle(held: Collection[str | None]) -> str | None:
    """A GPU that no worker holds, or None (also while a worker's GPU is UNKNOWN: it may hold any)."""
    if UNKNOWN in held:
        return None
    taken = {g for gpu in held if gpu for g in gpu.split(",")}
    return next((g for g in visible() if g not in taken), None)


def environment(gpu: str | None) -> dict[str, str]:
    """What a process the server starts needs in its environment to train on `gpu` (see place)."""
    return {} if gpu is UNKNOWN else {"CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
