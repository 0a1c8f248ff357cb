"""Writer: a run's epoch-end files (sample grids, checkpoints, resume.pt) written by one background thread, in order.

On a GPU an epoch of the quick preset is a few milliseconds of training while its grid PNG and a checkpoint take tens
of milliseconds to encode and write; done on the training thread, the GPU would wait for them. The queue is small, so a
disk slower than the side work holds the side work back (trainer/sidework.py: its epochs then go unscored, their
resume states unwritten, until the newest one) instead of piling up copies of the weights in memory. A job that raises
stops the writer: the error is raised again on the submitting thread at its next `submit`, `check` or `flush`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

QUEUE_SIZE = 2

Job = Callable[[], None]


class Writer:
    def __init__(self, size: int = QUEUE_SIZE):
        self.size = size
        self.jobs: deque[Job | None] = deque()  # a None job ends the thread
        self.running = False
        self.changed = threading.Condition()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job` after every job before it; waits while the queue is full."""
        with self.changed:
            self.changed.wait_for(lambda: self.error is not None or len(self.jobs) < self.size)
            self._raise()
            self.jobs.append(job)
            self.changed.notify_all()

    def check(self) -> None:
        """Raise the first job's error, if one failed."""
        with self.changed:
            self._raise()

    def flush(self) -> None:
        """Wait until every job queued so far has run; raise the first job's error, if one failed."""
        with self.changed:
            self.changed.wait_for(lambda: not self.jobs and not self.running)
            self._raise()

    def close(self) -> None:
        """Run what is queued, then end the thread."""
        with self.changed:
            self.jobs.append(None)
            self.changed.notify_all()
        self.thread.join()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close()
        if kind is None:
            self.check()

    def _run(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(lambda: bool(self.jobs))
                job = self.jobs.popleft()
                self.running = job is not None
                self.changed.notify_all()
            if job is None:
                return
            try:
                if self.error is None:  # after a failure the rest is skipped: it may depend on what failed
                    job()
            except BaseException as e:
                self.error = e
            finally:
                with self.changed:
                    self.running = False
                    self.changed.notify_all()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
