"""Writer: a run's epoch-end files (sample grids, checkpoints) written by one background thread, in order.

On a GPU an epoch of the quick preset is a few milliseconds of training while its grid PNG and a checkpoint take tens
of milliseconds to encode and write; done on the training thread, the GPU would wait for them. The queue is small, so a
disk slower than training holds training back instead of piling up copies of the weights in memory. A job that raises
stops the writer: the error is raised again on the training thread at its next `submit` or at `flush`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

QUEUE_SIZE = 2


class Writer:
    def __init__(self, size: int = QUEUE_SIZE):
        self.jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` after every job before it; waits while the queue is full."""
        self._raise()
        self.jobs.put(job)

    def flush(self) -> None:
        """Wait until every job queued so far has run; raise the first job's error, if one failed."""
        self.jobs.join()
        self._raise()

    def close(self) -> None:
        """Run what is queued, then end the thread."""
        self.jobs.put(None)
        self.thread.join()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close()
        if kind is None:
            self._raise()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                if self.error is None:  # after a failure the rest is skipped: it may depend on what failed
                    job()
            except BaseException as e:
                self.error = e
            finally:
                self.jobs.task_done()
        self.jobs.task_done()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
