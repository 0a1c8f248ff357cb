"""Server side of the journal: replaying workers' `runs/<id>/journal.jsonl` (trainer/journal.py) into the database.

A worker appends every message to its run's journal before it sends it, so the journal is the record and the socket
only the fast path. The server reads each journal from `runs.journal_offset` (the bytes already replayed) at these
moments, and so stores whatever the socket did not:

- at start-up, on a thread of its own while the server already serves (`Backlog`: a worker that trained on while the
  server was down); until a run's replay ends the API says it is `replaying` and the supervisor leaves it alone;
- when a worker connects, before the connection is accepted (the worker drops from memory what it journalled
  before connecting: the replay has it);
- when a worker process ends, before the supervisor decides how its run ended (an epoch or a status message written
  by a worker killed -9 before the server acknowledged it).

Each message goes through the same ingest as the socket's, which stores a `(run, attempt, seq)` once. The replay at a
worker's end comes strictly before the run can be started again, so an older attempt's lines are always stored before
the newer attempt's `running` status deletes what that attempt logged past its checkpoint, and never re-read after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from app.storage import json_view as views
from app.storage.db import Run
from app.storage.ingest import RunDeleted, store
from trainer.journal import read_lines
from trainer.protocol import JOURNAL, parse_message

log = logging.getLogger(__name__)
CHUNK = 200  # messages per transaction

_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)  # one replay of a run at a time


def replay(sessions: sessionmaker, run_id: int, run_dir: Path, each: Callable[[], bool] | None = None) -> int:
    """Store the journal lines of run `run_id` after its `journal_offset`, in order, CHUNK messages per transaction.
    A last line without its newline is left for the next replay; a complete line that is not a valid message is
    logged and skipped. `each`, called after every transaction, stops the replay by returning False. Returns how many
    messages were stored (not stored before)."""
    path = Path(run_dir) / JOURNAL
    with _locks[run_id]:
        with sessions() as s:
            run = s.get(Run, run_id)
            offset = (run.journal_offset or 0) if run else None
        if offset is None or not path.is_file() or path.stat().st_size <= offset:
            return 0
        stored, chunk = 0, []
        for end, line in read_lines(path, offset):
            chunk.append((end, line))
            if len(chunk) == CHUNK:
                stored += _store(sessions, run_id, run_dir, chunk)
                chunk = []
                if each is not None and not each():
                    return stored
        if chunk:
            stored += _store(sessions, run_id, run_dir, chunk)
    return stored


def behind(sessions: sessionmaker, runs_dir: Path) -> list[int]:
    """The runs whose journal has lines after its `journal_offset`."""
    with sessions() as s:
        runs = s.execute(select(Run.id, Run.journal_offset)).all()
    return [run_id for run_id, offset in runs if _size(runs_dir / str(run_id) / JOURNAL) > (offset or 0)]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Backlog:
    """The journals a server finds behind its database at start-up (its workers trained on while it was down), replayed
    on a thread of their own while the server serves: a journal of 100,000 lines held the start for minutes. Each run
    is in `json_view.replaying` (the API's `replaying`) until its replay ends; `caught_up(run_id)` is then called, and
    `progress(run_id)` at most every PROGRESS_SECONDS meanwhile (open pages take a fresh snapshot)."""

    PROGRESS_SECONDS = 1.0

    def __init__(self, sessions: sessionmaker, runs_dir: Path):
        self.sessions, self.runs_dir = sessions, runs_dir
        self.runs = behind(sessions, runs_dir)
        views.replaying.update(self.runs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, caught_up: Callable[[int], None], progress: Callable[[int], None]) -> None:
        self.thread = threading.Thread(target=self._run, args=(caught_up, progress), name="journal-backlog", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop after the transaction under way; the rest is replayed at the next start."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        views.replaying.difference_update(self.runs)

    def _run(self, caught_up: Callable[[int], None], progress: Callable[[int], None]) -> None:
        started, stored = time.monotonic(), 0
        for run_id in self.runs:
            shown = time.monotonic()

            def each() -> bool:
                nonlocal shown
                if time.monotonic() - shown > self.PROGRESS_SECONDS:
                    progress(run_id)
                    shown = time.monotonic()
                return not self.stopping.is_set()

            try:
                stored += replay(self.sessions, run_id, self.runs_dir / str(run_id), each)
            except Exception:
                log.exception("run %s: its journal could not be replayed at start-up", run_id)
            if self.stopping.is_set():
                return
            views.replaying.discard(run_id)
            try:
                caught_up(run_id)
            except Exception:
                log.exception("run %s: what follows its start-up replay failed", run_id)
        if stored:  # the server missed them: it was down, or its database was restored
            log.warning("stored %d messages from the runs' journals in %.2f s", stored, time.monotonic() - started)


def replay_all(sessions: sessionmaker, runs_dir: Path) -> int:
    """Replay every run's journal that has lines not replayed yet; returns how many messages were stored."""
    started = time.monotonic()
    stored = sum(replay(sessions, run_id, runs_dir / str(run_id)) for run_id in behind(sessions, runs_dir))
    if stored:  # the server missed them: its database was restored
        log.warning("stored %d messages from the runs' journals in %.2f s", stored, time.monotonic() - started)
    return stored


def _store(sessions: sessionmaker, run_id: int, run_dir: Path, lines: Sequence[tuple[int, bytes]]) -> int:
    """Ingest `lines` in one transaction and move the run's offset past them. When one of them cannot be stored (or
    the socket stored one meanwhile), the chunk is rolled back and stored line by line, so only the bad line is lost."""
    try:
        return _ingest(sessions, run_id, run_dir, lines)
    except (ValueError, KeyError, IntegrityError):
        pass
    stored = 0
    for one in lines:
        try:
            stored += _ingest(sessions, run_id, run_dir, [one])
        except (ValueError, KeyError, IntegrityError) as e:
            log.warning("run %s: journal line ending at byte %d not stored: %s", run_id, one[0], e)
            with sessions.begin() as s:
                if run := s.get(Run, run_id):
                    run.journal_offset = one[0]
    return stored


def _ingest(sessions: sessionmaker, run_id: int, run_dir: Path, lines: Sequence[tuple[int, bytes]]) -> int:
    """Parse the lines and store them in one transaction, with the offset past them."""
    messages = []
    for end, line in lines:
        try:
            messages.append(parse_message(line))
        except ValidationError as e:
            log.warning("run %s: journal line ending at byte %d is not a message: %s", run_id, end, e)
    try:
        return store(sessions, run_id, run_dir, messages, journal_offset=lines[-1][0])[0]
    except RunDeleted:
        return 0
