"""Opening the files a worker wrote into its run's folder, without trusting the worker.

A worker holds only its own run's token, and on a cluster it runs on another machine, as another job: it must not be
able to make the server read (or write) anything outside `runs/<id>/`. It could put a symlink where a checkpoint or a
grid was, make `checkpoints/` itself a link to another folder, or report a FIFO. So every file under a run's folder is
opened one component at a time from the run's folder, each with O_NOFOLLOW (a link anywhere on the way fails the open,
and nothing can be swapped in between a check and the open), and used only when it is a regular file. What is served
is the file that was opened (`RunFileResponse`), never the path again.

A hard link is no link to the open: the worker (the server's own user, on a local executor) could link a file of the
server's into its folder. A regular file with more than one name is used only when all its names are in the folder it
was opened in: the worker's `netg.pth`/`netd.pth` are hard links to the newest numbered copy beside them
(trainer/checkpoint.py); a file with a name anywhere else is refused.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from app.storage.db import utcnow
from trainer.protocol import WORKER_LOG, is_plain_name

log = logging.getLogger(__name__)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotInRun(OSError):
    """The name is there but is not a regular file reached without links inside the run's folder."""


def _open(run_dir: Path, parts: tuple[str, ...], flags: int, mode: int = 0o644) -> int:
    if not all(is_plain_name(p) for p in parts):
        raise NotInRun(errno.EINVAL, f"{'/'.join(parts)!r} is not a plain name in the run's folder")
    try:
        fd = os.open(run_dir, _DIR)  # runs/<id> itself must not be a link either
        try:
            for folder in parts[:-1]:
                inner = os.open(folder, _DIR, dir_fd=fd)
                os.close(fd)
                fd = inner
            # O_NONBLOCK: opening a FIFO must not hang the server; it is refused below like any file that is not regular.
            file_fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=fd)
            try:
                _check(fd, file_fd, parts)
            except OSError:
                os.close(file_fd)
                raise
        finally:
            os.close(fd)
    except (FileNotFoundError, NotInRun):
        raise
    except OSError as e:  # ELOOP: a link; ENOTDIR: a folder on the way is a file or a link
        raise NotInRun(e.errno, f"{'/'.join(parts)} is a link or lies behind one") from None
    os.set_blocking(file_fd, True)
    return file_fd


def _check(dir_fd: int, file_fd: int, parts: tuple[str, ...]) -> None:
    """A regular file whose every name (hard link) is in its folder, `dir_fd`."""
    st = os.fstat(file_fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotInRun(errno.EINVAL, f"{'/'.join(parts)} is not a regular file")
    if st.st_nlink == 1:
        return
    with os.scandir(dir_fd) as entries:
        here = sum(1 for e in entries if e.inode() == st.st_ino and e.is_file(follow_symlinks=False))
    if not here == st.st_nlink == os.fstat(file_fd).st_nlink:  # and no name was added while the folder was read
        raise NotInRun(errno.EPERM, f"{'/'.join(parts)} is a hard link to a file outside its folder "
                                    f"({st.st_nlink} names, {here} of them there)")  # fmt: skip


def open_in_run(run_dir: Path, *parts: str) -> BinaryIO:
    """`run_dir/parts...` opened for reading. FileNotFoundError when it is not there, NotInRun when it is but is not
    a regular file reached without links inside `run_dir`."""
    return os.fdopen(_open(run_dir, parts, os.O_RDONLY), "rb")


def regular_size(run_dir: Path, *parts: str) -> int:
    """The size of a regular file inside the run's folder (the errors of `open_in_run`)."""
    with open_in_run(run_dir, *parts) as f:
        return os.fstat(f.fileno()).st_size


def claim(run_dir: Path) -> None:
    """Make a new run's folder. One already there with anything in it belongs to a run this database does not know
    (the database was lost, or another `--database-url` points at the same runs folder): it is moved aside with a log
    line, never written into, so the new run's worker cannot replay or extend another run's journal."""
    try:
        run_dir.mkdir()
        return
    except FileExistsError:
        if run_dir.is_dir() and not run_dir.is_symlink() and not any(run_dir.iterdir()):
            return  # empty: nothing in it to adopt
    aside = run_dir.with_name(f"{run_dir.name}.orphan-{utcnow():%Y%m%dT%H%M%S.%f}")
    os.rename(run_dir, aside)
    log.warning("run %s: its folder held files of a run the database does not know; moved aside to %s", run_dir.name,
                aside)
    run_dir.mkdir()


def note(run_dir: Path, text: str) -> None:
    """Say `text` in the server's log and in the run's worker.log (appended; never through a link)."""
    log.warning("run %s: %s", run_dir.name, text)
    try:
        fd = _open(run_dir, (WORKER_LOG,), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError:
        return
    with os.fdopen(fd, "ab") as f:
        f.write(f"[server] {text}\n".encode())


class RunFileResponse(FileResponse):
    """A FileResponse (ranges, HEAD, ETag) over a file already opened by `open_in_run`: it sends the file that was
    checked, through `/proc/self/fd`, which reaches exactly that open file whatever its name points to now."""

    def __init__(self, file: BinaryIO, **kwargs) -> None:
        self.file = file
        super().__init__(f"/proc/self/fd/{file.fileno()}", stat_result=os.fstat(file.fileno()), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.file.close()
