"""Files written whole or not at all, and a file's SHA-256: for the worker's checkpoints, grids and caches, and the
server's database copy and checks. Torch-free, so the server imports it too."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic(path: Path, *, unique: bool = False) -> Iterator[Path]:
    """A temporary name beside `path` to write to, renamed onto `path` when the block ends: a reader (or a worker killed
    mid-write) never sees half a file. Removed when the block raises. `unique`: a name of its own, for writers in
    several processes at once (runs filling one cache); else `path` + ".tmp"."""
    if unique:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_of(f: BinaryIO) -> str:
    """The SHA-256 of what is left to read in `f`, a MiB at a time."""
    digest = hashlib.sha256()
    while chunk := f.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
