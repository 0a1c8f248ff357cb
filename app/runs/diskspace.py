"""A full disk under the runs folder: named as a worker's cause of death, and a reserve to record it with.

The database usually lives on the same filesystem as the run folders (runs/ganboard.db). When a worker fills it, not
even the one-row write that fails its run would fit. So the server keeps a reserve file of zeros there while space is
plentiful, and deletes it when a worker died on a full disk: the run's failure can be written, with the reason. The
reserve comes back once space does.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
FULL_BYTES = 16 * 2**20  # less free than this on a run folder's filesystem: full, for a worker writing checkpoints
RESERVE_BYTES = 8 * 2**20
RESERVE = ".ganboard-reserve"
SIGNS = ("No space left on device", "[Errno 28]", "database or disk is full")


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def full_disk(run_dir: Path, log_tail: str) -> str | None:
    """`the disk holding <run_dir> is full (N MiB free)...` when the worker's log says so (ENOSPC) or its
    filesystem has (almost) no space left now; None otherwise. Named first: the error the worker died of may say
    nothing about it, or may not have reached its log at all."""
    free = free_bytes(run_dir)
    if not any(sign in log_tail for sign in SIGNS) and (free is None or free >= FULL_BYTES):
        return None
    space = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
    return f"the disk holding {run_dir} is full{space}: free some space, then Resume"


class Reserve:
    def __init__(self, runs_dir: Path):
        self.path = runs_dir / RESERVE

    def keep(self) -> None:
        """Have the reserve, when there is room for it and more."""
        if self.path.exists() or (free_bytes(self.path.parent) or 0) < 4 * RESERVE_BYTES:
            return
        try:
            with self.path.open("wb") as f:
                f.write(bytes(RESERVE_BYTES))
        except OSError as e:
            log.warning("could not keep a %d MiB reserve in %s: %s", RESERVE_BYTES >> 20, self.path.parent, e)
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            log.error("the disk holding %s is full: its %d MiB reserve is released, to record why runs end",
                      self.path.parent, RESERVE_BYTES >> 20)  # fmt: skip
