"""The SQLite file under a serving server: noticed when it is deleted or replaced, and put back.

SQLite writes on into a database file that was unlinked while it is open, and everything is gone at the next restart.
So the server keeps one connection of its own on the file it opened (the keeper), and the supervisor's tick compares
the file now at the path with it (device and inode). When they differ it logs an error and restores: the keeper, which
still reads the deleted file, copies it with SQLite's backup API into a new file at the path, the engine is replaced
by one on the new file, and the runs' journals are replayed for whatever reached the old file after the copy.

The old keeper stays open until the server stops: SQLite's last connection on a file deletes `<path>-wal` by name when
it closes, which would be the new file's WAL. It is closed after the new engine's connections, at shutdown.

A database server (PostgreSQL) keeps its own files, and a server that goes away and comes back is a reconnection
(app.storage.db's `pool_pre_ping`), not a lost file: there is no file to guard, and `check` does nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from app.storage import journal
from app.storage.db import make_engine
from trainer.files import atomic

log = logging.getLogger(__name__)


class DatabaseFile:
    def __init__(self, url: str, sessions: sessionmaker, runs_dir: Path):
        self.url, self.sessions, self.runs_dir = url, sessions, runs_dir
        parsed = make_url(url)
        file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        self.path = Path(parsed.database).resolve() if file else None
        self.keepers: list[sqlite3.Connection] = []
        self.identity: tuple[int, int] | None = None
        if self.path:
            self._keep()
        else:
            log.info("database %s is not a file here: no file guard", parsed.render_as_string())  # password hidden

    @property
    def engine(self) -> Engine:
        return self.sessions.kw["bind"]

    def _keep(self) -> None:
        keeper = sqlite3.connect(self.path, check_same_thread=False)
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL too, and holds its lock
        self.keepers.append(keeper)
        self.identity = _identity(self.path)

    def check(self) -> bool:
        """Restore the file when it is not the one the server opened; True when it did."""
        if self.path is None or _identity(self.path) == self.identity:
            return False
        started = time.monotonic()
        how = "deleted" if not self.path.exists() else "replaced by another file"
        log.error("the database %s was %s while the server uses it; restoring it from the open copy", self.path, how)
        self._restore()
        replayed = journal.replay_all(self.sessions, self.runs_dir)
        log.error("the database %s is restored in %.2f s; %d messages replayed from the runs' journals", self.path,
                  time.monotonic() - started, replayed)  # fmt: skip
        return True

    def _restore(self) -> None:
        self.engine.dispose()  # pooled connections of the old file closed; the keeper still has it
        with atomic(self.path) as tmp:
            tmp.unlink(missing_ok=True)
            target = sqlite3.connect(tmp)
            try:
                self.keepers[-1].backup(target)
            finally:
                target.close()
            for leftover in (f"{self.path}-wal", f"{self.path}-shm"):  # the old file's, or a stray new file's
                Path(leftover).unlink(missing_ok=True)
        self.sessions.configure(bind=make_engine(self.url))
        self._keep()

    def close(self) -> None:
        self.engine.dispose()
        for keeper in reversed(self.keepers):
            keeper.close()
        self.keepers.clear()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
