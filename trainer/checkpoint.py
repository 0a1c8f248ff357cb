"""Checkpoint files of a run: plain state_dicts for G and D (loadable into the article's classes) and resume.pt.

Every file is written to a temporary name and renamed into place, so a worker killed mid-write never leaves a
truncated checkpoint behind. The training thread takes host copies (`host_copy`); the writer thread saves them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainer.protocol import BEST, LATEST, RESUME, is_snapshot


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def host_copy(obj: Any, pinned: bool = False) -> Any:
    """`obj` (tensors in dicts, lists and tuples) with every tensor copied to contiguous CPU memory, so that training can
    go on changing the originals and the copies load anywhere, whatever memory format or device trained them.

    `pinned`: copy into pinned memory without waiting for the GPU; the copies are ready once the current stream has run
    past this point (record an event after the call and synchronise on it before reading them)."""
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, pin_memory=pinned).copy_(obj.detach(), non_blocking=pinned)
    if isinstance(obj, dict):
        return {k: host_copy(v, pinned) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v, pinned) for v in obj)
    return obj


def checkpoint_names(copies: tuple[str, str]) -> list[str]:
    """The files a checkpoint writes, in order: the latest G and D, their `copies`, resume.pt."""
    return [*LATEST, *copies, RESUME]


def save_checkpoint(ckpt_dir: Path, copies: tuple[str, str], resume_state: dict) -> list[str]:
    """Write netg.pth and netd.pth, G's and D's `copies` (an epoch's or a snapshot's names) and resume.pt, from a host
    copy of the resume state; return the file names written. A new snapshot replaces the older one."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    g, d = resume_state["netg"], resume_state["netd"]
    files = dict(zip(checkpoint_names(copies), (g, d, g, d, resume_state)))
    for name, obj in files.items():
        atomic_save(obj, ckpt_dir / name)
    if is_snapshot(copies[0]):
        for old in ckpt_dir.iterdir():
            if is_snapshot(old.name) and old.name not in copies:
                old.unlink(missing_ok=True)
    return list(files)


def save_best(ckpt_dir: Path, resume_state: dict) -> list[str]:
    """Write G and D of a host copy of the resume state as the `BEST` pair (the epoch with the lowest FID so far),
    replacing the previous best; return their names."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for name, net in zip(BEST, ("netg", "netd")):
        atomic_save(resume_state[net], ckpt_dir / name)
    return list(BEST)


def load_user_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict the user supplied. weights_only=True refuses pickles that would run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or OSError depending on what is wrong
        raise ValueError(f"{path}: not a loadable weights file ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors)")
    return state
