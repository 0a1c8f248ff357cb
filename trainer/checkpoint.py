"""Checkpoint files of a run: plain state_dicts for G and D (loadable into the article's classes) and resume.pt.

Every file is written to a temporary name and renamed into place, so a worker killed mid-write never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plain_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU, contiguous state_dict: loads anywhere, whatever memory format or device trained it."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in net.state_dict().items()}


def save_checkpoint(ckpt_dir: Path, epoch: int, netg: nn.Module, netd: nn.Module, resume_state: dict) -> list[str]:
    """Write netg.pth, netd.pth, their copies for `epoch` and resume.pt; return the file names written."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    g, d = plain_state_dict(netg), plain_state_dict(netd)
    files = {
        "netg.pth": g,
        "netd.pth": d,
        f"netg_{epoch:04d}.pth": g,
        f"netd_{epoch:04d}.pth": d,
        "resume.pt": resume_state,
    }
    for name, obj in files.items():
        atomic_save(obj, ckpt_dir / name)
    return list(files)


def load_user_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict the user supplied. weights_only=True refuses pickles that would run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or OSError depending on what is wrong
        raise ValueError(f"{path}: not a loadable weights file ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors)")
    return state
