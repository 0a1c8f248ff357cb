"""Worker side of the journal (app/storage/journal.py replays it): `runs/<id>/journal.jsonl`, each message appended, then sent.

The worker writes it (`JournalWriter`), the server reads it back (`read_lines`, from a byte offset). A line is
written with one `write()` on a file opened O_APPEND, so a worker killed -9 leaves every line it wrote in the page
cache and at most a torn last line; fsync (every `SYNC_SECONDS`, and always for `sync=True`) bounds what a power
cut can take. Readers skip a last line without its newline: it is still being written, or it never will be; the next
writer ends it with a newline before its own first line, so it becomes one bad line that readers log and skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

SYNC_SECONDS = 0.5


class JournalWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:  # the new name must survive a crash as well as the lines in it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        elif _ends_torn(path):  # an earlier worker killed mid-write: end its line, or ours would be glued to it
            os.write(self.fd, b"\n")
        self.synced = time.monotonic()

    def write(self, line: str, sync: bool = False) -> None:
        data = (line + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]
        if sync or time.monotonic() - self.synced >= SYNC_SECONDS:
            self.sync()

    def sync(self) -> None:
        os.fsync(self.fd)
        self.synced = time.monotonic()

    def close(self) -> None:
        if self.fd >= 0:
            self.sync()
            os.close(self.fd)
            self.fd = -1


def _ends_torn(path: Path) -> bool:
    """True when the file's last line has no newline: the rest of it will never come."""
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def read_lines(path: Path, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset just past the line, the line without its newline) for every complete line after `offset`."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(offset)
        for line in f:
            if not line.endswith(b"\n"):
                return  # torn: not ours to read yet
            offset += len(line)
            yield offset, line[:-1]
