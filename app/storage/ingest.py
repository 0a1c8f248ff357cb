"""Storing what a worker reports: `store` is the one way in, for the worker socket (a message at a time) and the
journal replay (hundreds at a time).

Both parse each message once (`trainer.protocol.parse_message`) and hand the messages here. Storing is idempotent by
(run, attempt, seq), so a message sent again after a reconnect, or replayed, is stored once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timezone
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from app.storage import health, history
from app.storage.db import Checkpoint, Metric, Received, Run, Sample, SystemSample, sample_url
from app.storage.json_view import alert_json, checkpoints_json, run_json, samples_json, system_json
from app.storage.lifecycle import TransitionError, transition
from app.storage.runfiles import NotInRun, note, open_in_run, regular_size
from trainer.files import sha256_of
from trainer.protocol import CHECKPOINTS_DIR, ROW_COLUMNS, SAMPLES_DIR, STATS, BatchMessage, EpochMessage, ScoreMessage
from trainer.protocol import Status
from trainer.protocol import StatusMessage, StoppingMessage, SystemMessage, WorkerMessage, is_plain_name, is_snapshot

log = logging.getLogger(__name__)


RATE_WINDOW = 20.0  # images/s is measured over this many seconds of the latest batches
RATE_MIN_SPAN = 1.0  # and only once they span this long


RUN_LATEST = tuple(name for name in STATS if name in Run.__table__.columns)  # metrics whose latest value the run holds
Digests = dict[str, tuple[int, str]]  # checkpoint name -> (size, sha256)


class RunDeleted(LookupError):
    """The run was deleted while its messages were on their way."""


def store(sessions: sessionmaker, run_id: int, run_dir: Path, messages: Sequence[WorkerMessage],
          journal_offset: int | None = None) -> tuple[int, list[dict]]:
    """Store `messages` of run `run_id`, in order, in one transaction; returns how many were new and the messages for
    open pages. The checkpoint files the new ones name are hashed first, outside the transaction (no write lock held
    while files are read). Consecutive batches of one attempt are stored as one batch (one insert; the run's progress,
    its buckets and the health rules once): a replay of a long journal costs per transaction, not per line.
    `journal_offset`: the byte of `journal.jsonl` these messages end at, stored with them (app/storage/journal.py)."""
    keys = [(m.attempt, m.seq) for m in messages]
    with sessions() as s:
        seen = _received(s, run_id, keys)
    new = list({(m.attempt, m.seq): m for m in messages if (m.attempt, m.seq) not in seen}.values())
    digests = {(m.attempt, m.seq): checkpoint_digests(run_dir, m) for m in new}
    with sessions.begin() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise RunDeleted(run_id)
        seen = _received(s, run_id, [(m.attempt, m.seq) for m in new])  # the socket stored one meanwhile
        new = [m for m in new if m.attempt <= run.attempt and (m.attempt, m.seq) not in seen]  # never a future attempt
        if new:
            s.execute(insert(Received.__table__), [{"run_id": run_id, "attempt": m.attempt, "seq": m.seq} for m in new])
        out = []
        for msg in _merged(new):
            out += _ingest(s, run, run_dir, msg, digests.get((msg.attempt, msg.seq), {}))
        if journal_offset is not None:
            run.journal_offset = journal_offset
    return len(new), out


def _received(session: Session, run_id: int, keys: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Which of `keys` (attempt, seq) are stored: a range of the primary key per attempt (a row-value IN list is a
    scan of the whole table in SQLite, which grows with every message)."""
    seqs: dict[int, list[int]] = {}
    for attempt, seq in keys:
        seqs.setdefault(attempt, []).append(seq)
    found = set()
    for attempt, wanted in seqs.items():
        query = select(Received.seq).where(Received.run_id == run_id, Received.attempt == attempt,
                                           Received.seq.between(min(wanted), max(wanted)))  # fmt: skip
        found |= {(attempt, seq) for seq in session.scalars(query)}
    return found & set(keys)


def _merged(messages: list[WorkerMessage]) -> list[WorkerMessage]:
    """The messages with each stretch of consecutive batches of one attempt, steps increasing, as one batch."""
    stretches: list[list[WorkerMessage]] = []
    for msg in messages:
        last = stretches[-1][-1] if stretches else None
        if (isinstance(msg, BatchMessage) and isinstance(last, BatchMessage) and last.attempt == msg.attempt
                and msg.rows.step and last.rows.step and last.rows.step[-1] < msg.rows.step[0]):  # fmt: skip
            stretches[-1].append(msg)
        else:
            stretches.append([msg])
    return [stretch[0] if len(stretch) == 1 else _one_batch(stretch) for stretch in stretches]


def _one_batch(batches: list[BatchMessage]) -> BatchMessage:
    rows = {c: [v for b in batches for v in getattr(b.rows, c)] for c in ROW_COLUMNS}
    last = batches[-1]
    return BatchMessage.model_construct(seq=last.seq, attempt=last.attempt, rows=type(last.rows).model_construct(**rows))


def checkpoint_digests(run_dir: Path, msg: WorkerMessage) -> Digests:
    """Size and SHA-256 of the checkpoint files a message names, before the transaction. A worker hashes what it
    writes while writing it and sends the digest: the file's size on disk is checked against it instead of reading it
    again (127 MB an epoch on the article preset). A file it sent no digest for is read here, outside the write lock;
    one linked under two names is read once. Names that are not plain file names, or not files, or whose size differs
    from the digest's, are left out (never registered, so never served)."""
    names = [n for n in getattr(msg, "checkpoints", ()) if is_plain_name(n)]
    sent = getattr(msg, "digests", {})
    by_file: dict[tuple[int, int, int], tuple[int, str]] = {}
    digests: Digests = {}
    for name in names:
        try:
            f = open_in_run(run_dir, CHECKPOINTS_DIR, name)  # a regular file inside the run's folder, no link followed
        except NotInRun as e:
            note(run_dir, f"checkpoint {name} not registered: {e.strerror}")
            continue
        except OSError:
            continue
        with f:
            st = os.fstat(f.fileno())
            if name in sent:
                if sent[name].size == st.st_size:
                    digests[name] = (st.st_size, sent[name].sha256)
                continue
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
            if key not in by_file:
                by_file[key] = (st.st_size, sha256_of(f))
            digests[name] = by_file[key]
    return digests


def ingest(session: Session, run: Run, run_dir: Path, msg: WorkerMessage, digests: Digests | None = None) -> list[dict] | None:
    """Store one worker message. Returns the messages for open pages, or None when there is nothing new: this
    (run, attempt, seq) was stored before (a resend after a reconnect), or it claims an attempt never started.

    Rows, samples and checkpoints of the current or an older attempt are stored; a status is applied only from the
    current attempt of a running run, and the run's progress moves only with the current attempt.
    """
    if msg.attempt > run.attempt:
        return None
    key = dict(run_id=run.id, attempt=msg.attempt, seq=msg.seq)
    if session.get(Received, key):
        return None
    session.add(Received(**key))
    return _ingest(session, run, run_dir, msg, checkpoint_digests(run_dir, msg) if digests is None else digests)


def _ingest(session: Session, run: Run, run_dir: Path, msg: WorkerMessage, digests: Digests) -> list[dict]:
    """Store one message not stored before, of this or an older attempt."""
    current = msg.attempt == run.attempt
    out: list[dict] = []
    if isinstance(msg, BatchMessage):
        out.append(_batch(session, run, msg, current))
    elif isinstance(msg, EpochMessage):
        out.append(_epoch(session, run, run_dir, msg, digests, current))
    elif isinstance(msg, ScoreMessage):
        out.append(_score(session, run, msg, digests, current))
    elif isinstance(msg, SystemMessage):
        out.append(_system(session, run, msg))
    elif isinstance(msg, StatusMessage):
        changed = _forget_checkpoints(session, run, msg.removed)
        if _register_checkpoints(session, run, digests, run.epoch if msg.epoch is None else msg.epoch, msg.step) or changed:
            out.append({"type": "checkpoints", "checkpoints": checkpoints_json(session, run.id)})
    if isinstance(msg, StatusMessage) and current and msg.status == Status.RUNNING and run.status == Status.QUEUED and run.job_id:
        transition(session, run, Status.RUNNING)  # a cluster's job started, and its worker said so before the tick saw it
    if isinstance(msg, StatusMessage) and current and run.status == Status.RUNNING:
        _status(session, run, msg)
    if current:  # health alerts, from what was just stored (app/storage/health.py)
        out.extend({"type": "alert", "alert": alert_json(a)} for a in _check_health(session, run, msg))
    session.flush()
    out.append({"type": "run", "run": run_json(run)})
    return out


def _batch(session: Session, run: Run, msg: BatchMessage, current: bool) -> dict:
    rows = msg.rows
    session.execute(_insert_ignoring_duplicates(session), [{**r, "run_id": run.id} for r in rows.records()])
    if current and rows.step:
        run.step = max(run.step, rows.step[-1])
        run.epoch = max(run.epoch, rows.epoch[-1] - 1)  # epochs finished; the epoch message sets it exactly
        for name in RUN_LATEST:
            value = next((v for v in reversed(getattr(rows, name)) if v is not None), None)
            if value is not None:
                setattr(run, name, value)
        if run.status == Status.RUNNING:
            run.images_per_s = _images_per_s(session, run, rows.step[-1], rows.time[-1], RATE_WINDOW)
            run.attempt_images_per_s = _images_per_s(session, run, rows.step[-1], rows.time[-1])
    if rows.step:
        if not current:  # an older attempt's late rows may fall inside stored buckets
            history.forget(session, run.id, min(rows.step) - 1)
        if history.reaches_multiple(min(rows.step), max(rows.step), history.REFRESH_EVERY):
            history.refresh(session, run)
    return {"type": "batch", "rows": {c: getattr(rows, c) for c in ("step", "epoch", "time", *STATS)}}  # every x axis


def _system(session: Session, run: Run, msg: SystemMessage) -> dict:
    sample = SystemSample(run_id=run.id, **msg.model_dump(exclude={"type", "seq"}))
    session.add(sample)
    return {"type": "system", **system_json(sample)}


def _check_health(session: Session, run: Run, msg: WorkerMessage) -> list:
    if isinstance(msg, (SystemMessage, ScoreMessage, StoppingMessage)):
        return []
    if isinstance(msg, BatchMessage):
        steps = msg.rows.step
        return health.after_batch(session, run) if steps and history.reaches_multiple(min(steps), max(steps), health.BATCH_EVERY) else []
    if isinstance(msg, EpochMessage):
        return health.after_epoch(session, run)
    return health.after_status(session, run, msg.status, msg.error)


def _images_per_s(session: Session, run: Run, step: int, at: float, window: float | None = None) -> float | None:
    """Training speed over the last `window` seconds of this attempt (all of it when None): between two batch rows, so
    the time spent loading data before the first batch never counts. None until the rows span RATE_MIN_SPAN."""
    started = run.running_since.replace(tzinfo=timezone.utc).timestamp() if run.running_since else 0.0
    since = max(at - window, started) if window else started
    first = session.execute(
        select(Metric.step, Metric.time).where(Metric.run_id == run.id, Metric.time >= since).order_by(Metric.time).limit(1)
    ).first()
    if first is None or at - first.time < RATE_MIN_SPAN:
        return None
    return (step - first.step) * run.config["batch_size"] / (at - first.time)


def _epoch(session: Session, run: Run, run_dir: Path, msg: EpochMessage, digests: Digests, current: bool) -> dict:
    if not is_plain_name(msg.sample):
        raise ValueError(f"sample: {msg.sample!r} is not a plain file name")
    try:
        size = regular_size(run_dir, SAMPLES_DIR, msg.sample)
    except NotInRun as e:
        note(run_dir, f"sample grid {msg.sample} not registered: {e.strerror}")
        size = None
    except OSError:  # not there (yet): registered all the same, served once it is
        size = None
    session.merge(Sample(run_id=run.id, epoch=msg.epoch, name=msg.sample, size=size, swd=msg.swd, fid=msg.fid, kid=msg.kid,
                         diversity=msg.diversity))
    registered = _files(session, run, msg, digests)
    if current:  # the writer reports an epoch after later batches may have arrived: never move the run back
        run.epoch, run.step, run.latest_sample = max(run.epoch, msg.epoch), max(run.step, msg.step), msg.sample
        run.scoring = msg.scoring
        _scores(run, msg)
    return {
        "type": "epoch", "epoch": msg.epoch, "images_per_s": msg.images_per_s, "seconds": msg.seconds,
        "sample": {"epoch": msg.epoch, "name": msg.sample, "url": sample_url(run.id, msg.sample),
                   "swd": msg.swd, "fid": msg.fid, "kid": msg.kid, "diversity": msg.diversity},
        "checkpoints": checkpoints_json(session, run.id) if registered else None,
    }  # fmt: skip


def _score(session: Session, run: Run, msg: ScoreMessage, digests: Digests, current: bool) -> dict:
    """FID and KID of an earlier epoch, computed while training went on: onto that epoch's sample."""
    sample = session.get(Sample, (run.id, msg.epoch))
    if sample is not None:
        sample.fid, sample.kid = msg.fid, msg.kid
    registered = _files(session, run, msg, digests)
    if current:
        run.scoring = None if run.scoring == msg.epoch else run.scoring
        _scores(run, msg)
    return {
        "type": "score", "epoch": msg.epoch,
        "sample": samples_json(session, run.id, msg.epoch)[0] if sample is not None else None,
        "checkpoints": checkpoints_json(session, run.id) if registered else None,
    }  # fmt: skip


def _scores(run: Run, msg: EpochMessage | ScoreMessage) -> None:
    """The run's latest and best SWD and FID, and which score chose its best checkpoint."""
    for score in ("swd", "fid"):
        if (value := getattr(msg, score, None)) is not None:
            best = getattr(run, f"best_{score}")
            setattr(run, score, value)
            setattr(run, f"best_{score}", value if best is None else min(best, value))
    run.fid_at = msg.fid_at or run.fid_at
    run.best_by = msg.best_by or run.best_by


def _files(session: Session, run: Run, msg: EpochMessage | ScoreMessage, digests: Digests) -> bool:
    """The checkpoint files a message wrote and removed; True when the list changed."""
    removed = _forget_checkpoints(session, run, msg.removed)
    return _register_checkpoints(session, run, digests, msg.epoch, msg.step) or removed


def _forget_checkpoints(session: Session, run: Run, names: list[str]) -> bool:
    """Numbered copies beyond keep_last and older snapshots, deleted by the worker: no longer listed or served."""
    if not names:
        return False
    session.execute(delete(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.name.in_(names)))
    return True


def _status(session: Session, run: Run, msg: StatusMessage) -> None:
    """The current attempt of a running run says it has started (the supervisor set it running) or how it ended."""
    if msg.status == Status.RUNNING:
        # A new attempt starts after its checkpoint: forget what an earlier attempt logged past it.
        session.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > msg.step))
        session.execute(delete(Sample).where(Sample.run_id == run.id, Sample.epoch > msg.epoch))
        run.step, run.epoch, run.total_steps, run.total_epochs = msg.step, msg.epoch, msg.total_steps, msg.total_epochs
        run.batches_per_epoch = msg.batches_per_epoch
        if msg.attempt > 1:
            run.restarts = [*(run.restarts or []), {"attempt": msg.attempt, "step": msg.step}]
        run.device, run.bf16, run.graphed = msg.device, msg.bf16, msg.graphed
        history.forget(session, run.id, msg.step)
        history.refresh(session, run)  # and for the plan it now has
        run.latest_sample = session.scalars(
            select(Sample.name).where(Sample.run_id == run.id).order_by(Sample.epoch.desc()).limit(1)
        ).first()
        return
    fields: dict = {"step": msg.step} if msg.step is not None else {}
    if msg.status == Status.FAILED:
        fields["error"] = msg.error + (f"\n\n{msg.traceback}" if msg.traceback else "")
        if msg.resumable is False:
            fields["unresumable"] = msg.error
    try:
        transition(session, run, msg.status, **fields)
    except TransitionError:
        log.info("run %s: %s from attempt %s came after another change; not applied", run.id, msg.status, msg.attempt)


def _register_checkpoints(session: Session, run: Run, digests: Digests, epoch: int, step: int | None) -> bool:
    """Register the files hashed for this message; a newer mid-epoch snapshot replaces the older ones' rows."""
    for name, (size, sha256) in digests.items():
        session.merge(Checkpoint(run_id=run.id, name=name, size=size, epoch=epoch, step=step, sha256=sha256))
    if step is not None and any(is_snapshot(name) for name in digests):
        older = session.scalars(select(Checkpoint.name).where(Checkpoint.run_id == run.id, Checkpoint.step < step))
        stale = [name for name in older if is_snapshot(name)]
        session.execute(delete(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.name.in_(stale)))
    return bool(digests)


def _insert_ignoring_duplicates(session: Session):
    """INSERT that skips rows whose primary key exists (a step logged by an earlier attempt), in this dialect. Of the
    table, not the mapped class: the ORM's bulk insert costs more than the database for thousands of rows."""
    dialect, table = session.get_bind().dialect.name, Metric.__table__
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE") if dialect in ("mysql", "mariadb") else insert(table)
