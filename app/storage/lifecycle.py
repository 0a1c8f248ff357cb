"""A run's lifecycle: `transition`, the one writer of `runs.status`, and `TransitionError`.

Apart from the supervisor so that what stores a worker's final status (app/storage/ingest.py, and through it the journal's
replay and the database-file guard) depends on the lifecycle only, never on the supervisor that starts workers.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.storage.db import Run, utcnow
from trainer.protocol import ENDED, Status, can_move

log = logging.getLogger(__name__)


class TransitionError(Exception):
    """A status change the lifecycle does not allow, or one that another change got to first (the API's 409)."""


def transition(session: Session, run: Run, new: Status, **fields) -> None:
    """Move `run` to `new`, with `fields` and the times that go with the move, in the caller's transaction.

    The one place a run's status is written. The UPDATE applies only while the row still has the status and attempt
    this session read: another thread (a worker's message, the tick, a request) may have moved it meanwhile, and then
    this raises instead of overwriting the newer state.
    """
    old = Status(run.status)
    if not can_move(old, new):
        raise TransitionError(f"run {run.id} is {old}: it cannot become {new}")
    now = utcnow()
    if new == Status.RUNNING:
        fields.update(running_since=now, started_at=run.started_at or now, finished_at=None, images_per_s=None,
                      attempt_images_per_s=None)
    elif old == Status.RUNNING:
        ran = (now - run.running_since).total_seconds() if run.running_since else 0.0
        fields.update(running_since=None, ran_seconds=run.ran_seconds + ran, images_per_s=None, scoring=None)
        stop = {"attempt": run.attempt, "step": fields.get("step", run.step), "status": str(new)}
        fields["stops"] = [*(run.stops or []), stop]
    if new in ENDED:  # an active run's error says why it was requeued (app/runs/supervisor.py): this end has its own, or none
        fields["finished_at"] = now
        fields.setdefault("error", None)
    elif new == Status.QUEUED:
        fields["finished_at"] = None
    fields["status"] = new
    session.flush()
    done = session.execute(
        update(Run).where(Run.id == run.id, Run.status == old, Run.attempt == run.attempt).values(**fields),
        execution_options={"synchronize_session": False},
    )
    if done.rowcount != 1:
        raise TransitionError(f"run {run.id} changed while it was to become {new}; reload it")
    for key, value in fields.items():
        set_committed_value(run, key, value)
    log.info("run %s: %s -> %s (attempt %s)", run.id, old, new, run.attempt)
