"""Checkpoint files of a run: plain state_dicts for G and D (loadable into the article's classes) and resume.pt.

Like Lightning's `ModelCheckpoint`: numbered copies every `save_every` epochs, of which the newest `keep_last` stay (and
the best pair, whatever its age); the latest `netg.pth`/`netd.pth` are hard links to the newest numbered copy (one write,
not two; a copy where the filesystem has no links). Every file is written to a temporary name and renamed into place,
so a worker killed mid-write never leaves a truncated checkpoint behind, and hashed while it is written: the server
trusts the size and SHA-256 a message carries instead of reading every checkpoint again.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainer.files import atomic
from trainer.protocol import BEST, LATEST, RESUME, is_numbered, is_snapshot

Digest = tuple[int, str]  # size in bytes, SHA-256


class _HashingFile(io.RawIOBase):
    """A file open for writing that hashes what goes through it."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b)


def atomic_save(obj: Any, path: Path) -> Digest:
    """torch.save `obj` to `path` through a temporary file; returns its size and SHA-256, computed while writing."""
    with atomic(path) as tmp, tmp.open("wb") as f:
        out = _HashingFile(f)
        torch.save(obj, out)
    return out.size, out.sha.hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes the same file as `source`: a hard link, swapped in atomically; a copy where links fail."""
    with atomic(target) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            tmp.write_bytes(source.read_bytes())


def host_copy(obj: Any, pinned: bool = False, copy: Callable[[torch.Tensor, torch.Tensor], Any] | None = None) -> Any:
    """`obj` (tensors in dicts, lists and tuples) with every tensor copied to contiguous CPU memory, so that training can
    go on changing the originals and the copies load anywhere, whatever memory format or device trained them.

    `pinned`: copy into pinned memory without waiting for the GPU; the copies are ready once the current stream has run
    past this point (record an event after the call and synchronise on it before reading them).
    `copy(into, tensor)`: how each tensor goes into the fresh memory `into` (at once by default; trainer/epoch_copies.py
    leaves some for later)."""
    if isinstance(obj, torch.Tensor):
        into = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=pinned)
        if copy is None:
            return into.copy_(obj.detach(), non_blocking=pinned)
        copy(into, obj)
        return into
    if isinstance(obj, dict):
        return {k: host_copy(v, pinned, copy) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v, pinned, copy) for v in obj)
    return obj


def save_nets(ckpt_dir: Path, copies: tuple[str, str], nets: tuple[dict, dict]) -> dict[str, Digest]:
    """Write G's and D's state_dicts `nets` as `copies` (an epoch's or a snapshot's names) and point netg.pth/netd.pth
    at them. Returns the digest of every name now holding a new file (the links included)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, latest, state in zip(copies, LATEST, nets):
        written[name] = atomic_save(state, ckpt_dir / name)
        link_or_copy(ckpt_dir / name, ckpt_dir / latest)
        written[latest] = written[name]
    return written


def stale_copies(ckpt_dir: Path, keep: tuple[str, str], keep_last: int | None) -> list[str]:
    """The numbered copies and snapshots that a new pair `keep` replaces: every snapshot but `keep`, and numbered copies
    older than the newest `keep_last` pairs (None: keep all)."""
    names = sorted(p.name for p in ckpt_dir.iterdir())
    snapshots = [n for n in names if is_snapshot(n) and n not in keep]
    numbered = sorted({n[5:] for n in names if is_numbered(n)})  # "0010.pth", by epoch
    old = numbered[: max(0, len(numbered) - keep_last)] if keep_last else []
    return snapshots + [f"net{net}_{suffix}" for suffix in old for net in "gd" if f"net{net}_{suffix}" in names]


def remove(ckpt_dir: Path, names: list[str]) -> None:
    for name in names:
        (ckpt_dir / name).unlink(missing_ok=True)


def save_best(ckpt_dir: Path, nets: tuple[dict, dict]) -> dict[str, Digest]:
    """Write G's and D's state_dicts `nets` as the `BEST` pair, replacing the previous best."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return {name: atomic_save(state, ckpt_dir / name) for name, state in zip(BEST, nets)}


def save_resume(ckpt_dir: Path, state: dict) -> dict[str, Digest]:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return {RESUME: atomic_save(state, ckpt_dir / RESUME)}


def load_user_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict the user supplied. weights_only=True refuses pickles that would run code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or OSError depending on what is wrong
        raise ValueError(f"{path}: not a loadable weights file ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors)")
    return state
