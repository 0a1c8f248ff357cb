"""Storing what a worker reports: one parsed protocol message at a time, in the caller's transaction.

The worker socket parses each message once (`trainer.protocol.parse_message`) and hands it here; a journal replay does
the same. Storing is idempotent by (run, attempt, seq), so a message sent again after a reconnect, or replayed, is
stored once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import Checkpoint, Metric, Received, Run, Sample, utcnow
from app.store import checkpoints_json, run_json, sample_url
from trainer.protocol import CHECKPOINTS_DIR, SAMPLES_DIR, STATS, BatchMessage, EpochMessage, Status, StatusMessage
from trainer.protocol import WorkerMessage, is_plain_name


def ingest(session: Session, run: Run, run_dir: Path, msg: WorkerMessage) -> list[dict] | None:
    """Store one worker message. Returns the messages for open pages, or None when this (run, attempt, seq) was
    stored before (a resend after a reconnect)."""
    key = dict(run_id=run.id, attempt=msg.attempt, seq=msg.seq)
    if session.get(Received, key):
        return None
    session.add(Received(**key))
    out: list[dict] = []
    if isinstance(msg, BatchMessage):
        out.append(_batch(session, run, msg))
    elif isinstance(msg, EpochMessage):
        out.append(_epoch(session, run, run_dir, msg))
    else:
        _status(session, run, run_dir, msg)
    session.flush()
    out.append({"type": "run", "run": run_json(run)})
    return out


def _batch(session: Session, run: Run, msg: BatchMessage) -> dict:
    records = [{**r, "run_id": run.id} for r in msg.rows.records()]
    if records:
        session.execute(_insert_ignoring_duplicates(session), records)
        run.step = max(run.step, msg.rows.step[-1])
        run.epoch = max(run.epoch, msg.rows.epoch[-1] - 1)  # epochs finished; the epoch message sets it exactly
        for name in STATS:
            value = next((v for v in reversed(getattr(msg.rows, name)) if v is not None), None)
            if value is not None and hasattr(run, name):
                setattr(run, name, value)
    return {"type": "batch", "rows": {c: getattr(msg.rows, c) for c in ("step", "epoch", *STATS)}}


def _epoch(session: Session, run: Run, run_dir: Path, msg: EpochMessage) -> dict:
    if not is_plain_name(msg.sample):
        raise ValueError(f"sample: {msg.sample!r} is not a plain file name")
    sample_path = run_dir / SAMPLES_DIR / msg.sample
    size = sample_path.stat().st_size if sample_path.is_file() else None
    session.merge(Sample(run_id=run.id, epoch=msg.epoch, name=msg.sample, size=size))
    _register_checkpoints(session, run, run_dir, msg.checkpoints, msg.epoch)
    run.epoch, run.step, run.images_per_s, run.latest_sample = msg.epoch, msg.step, msg.images_per_s, msg.sample
    return {
        "type": "epoch", "epoch": msg.epoch, "images_per_s": msg.images_per_s, "seconds": msg.seconds,
        "sample": {"epoch": msg.epoch, "name": msg.sample, "url": sample_url(run.id, msg.sample)},
        "checkpoints": checkpoints_json(session, run.id) if msg.checkpoints else None,
    }  # fmt: skip


def _status(session: Session, run: Run, run_dir: Path, msg: StatusMessage) -> None:
    if msg.status == Status.RUNNING:
        # A new attempt starts after its checkpoint: forget what an earlier attempt logged past it.
        session.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > msg.step))
        session.execute(delete(Sample).where(Sample.run_id == run.id, Sample.epoch > msg.epoch))
        run.step, run.epoch = msg.step, msg.epoch
        run.total_steps, run.total_epochs, run.device = msg.total_steps, msg.total_epochs, msg.device
        run.started_at = run.started_at or utcnow()
        run.error = None
        run.latest_sample = session.scalars(
            select(Sample.name).where(Sample.run_id == run.id).order_by(Sample.epoch.desc()).limit(1)
        ).first()
    else:
        _register_checkpoints(session, run, run_dir, msg.checkpoints, msg.epoch if msg.epoch is not None else run.epoch)
        run.finished_at = utcnow()
        if msg.status == Status.FAILED:
            run.error = msg.error + (f"\n\n{msg.traceback}" if msg.traceback else "")
        elif msg.step is not None:
            run.step = msg.step
    run.status = msg.status


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _register_checkpoints(session: Session, run: Run, run_dir: Path, names: list[str], epoch: int) -> None:
    for name in names:
        path = run_dir / CHECKPOINTS_DIR / name
        if is_plain_name(name) and path.is_file():
            session.merge(Checkpoint(run_id=run.id, name=name, size=path.stat().st_size, epoch=epoch, sha256=_sha256(path)))


def _insert_ignoring_duplicates(session: Session):
    """INSERT that skips rows whose primary key exists (a step logged by an earlier attempt), in this dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite_insert(Metric).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql_insert(Metric).on_conflict_do_nothing()
    return insert(Metric).prefix_with("IGNORE") if dialect in ("mysql", "mariadb") else insert(Metric)
