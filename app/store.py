"""Reading and writing runs in the database: the run JSON and worker messages (the metric history: app/history.py).

Every function here is synchronous and takes a Session; async callers run them in a thread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app import history
from app.db import METRIC_COLUMNS, Checkpoint, Metric, Received, Run, Sample, utcnow
from trainer.protocol import ACTIVE, RESUMABLE  # noqa: F401 (the API reads them from here)

SERIES = ("loss_d", "loss_g", "d_x", "d_g_z")


def iso(t) -> str | None:
    return t.isoformat() + "Z" if t else None


def sample_url(run_id: int, name: str) -> str:
    return f"/api/runs/{run_id}/samples/{name}"


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "name": run.name, "status": run.status, "config": run.config,
        "created_at": iso(run.created_at), "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
        "step": run.step, "epoch": run.epoch, "total_steps": run.total_steps, "total_epochs": run.total_epochs,
        "images_per_s": run.images_per_s, "loss_d": run.loss_d, "loss_g": run.loss_g, "d_x": run.d_x,
        "d_g_z": run.d_g_z, "latest_sample": sample_url(run.id, run.latest_sample) if run.latest_sample else None,
        "error": run.error, "pid": run.pid, "exit_code": run.exit_code, "device": run.device,
    }  # fmt: skip


def samples_json(session: Session, run_id: int) -> list[dict]:
    rows = session.scalars(select(Sample).where(Sample.run_id == run_id).order_by(Sample.epoch))
    return [{"epoch": s.epoch, "name": s.name, "size": s.size, "url": sample_url(run_id, s.name)} for s in rows]


def checkpoints_json(session: Session, run_id: int) -> list[dict]:
    rows = session.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.name))
    return [
        {"name": c.name, "size": c.size, "epoch": c.epoch, "sha256": c.sha256, "url": f"/api/runs/{run_id}/checkpoints/{c.name}"}
        for c in rows
    ]


def snapshot(session: Session, run: Run, after: int = 0) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "run": run_json(run),
        "metrics": history.buckets(session, run, after),
        "samples": samples_json(session, run.id),
        "checkpoints": checkpoints_json(session, run.id),
    }


def _last_value(values: list) -> Any:
    return next((v for v in reversed(values) if v is not None), None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_plain_name(name: str) -> bool:
    """A worker reports bare file names; anything else is never registered, so it can never be served."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _register_checkpoints(session: Session, run: Run, run_dir: Path, names: list[str], epoch: int) -> None:
    for name in names:
        path = run_dir / "checkpoints" / name
        if _is_plain_name(name) and path.is_file():
            session.merge(Checkpoint(run_id=run.id, name=name, size=path.stat().st_size, epoch=epoch, sha256=_sha256(path)))


def _insert_ignoring_duplicates(session: Session):
    """INSERT that skips rows whose primary key exists (a step logged by an earlier attempt), in this dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite_insert(Metric).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql_insert(Metric).on_conflict_do_nothing()
    return insert(Metric).prefix_with("IGNORE") if dialect in ("mysql", "mariadb") else insert(Metric)


def ingest(session: Session, run: Run, run_dir: Path, msg: dict) -> list[dict] | None:
    """Store one worker message in the caller's transaction. Returns the messages for open pages, or None when this
    (run, attempt, seq) was stored before (a resend after a reconnect)."""
    key = dict(run_id=run.id, attempt=int(msg["attempt"]), seq=int(msg["seq"]))
    if session.get(Received, key):
        return None
    session.add(Received(**key))
    kind = msg["type"]
    out: list[dict] = []
    if kind == "batch":
        rows = msg["rows"]
        records = [dict(zip(METRIC_COLUMNS, values), run_id=run.id) for values in zip(*(rows[c] for c in METRIC_COLUMNS))]
        if records:
            session.execute(_insert_ignoring_duplicates(session), records)
            run.step = max(run.step, rows["step"][-1])
            run.epoch = max(run.epoch, rows["epoch"][-1] - 1)  # epochs finished; the epoch message sets it exactly
            for s in SERIES:
                value = _last_value(rows[s])
                if value is not None:
                    setattr(run, s, value)
        out.append({"type": "batch", "rows": history.live_rows(rows)})
    elif kind == "epoch":
        if not _is_plain_name(msg["sample"]):
            raise ValueError(f"sample name {msg['sample']!r} is not a plain file name")
        sample_path = run_dir / "samples" / msg["sample"]
        size = sample_path.stat().st_size if sample_path.is_file() else None
        session.merge(Sample(run_id=run.id, epoch=msg["epoch"], name=msg["sample"], size=size))
        _register_checkpoints(session, run, run_dir, msg.get("checkpoints", []), msg["epoch"])
        run.epoch, run.step, run.images_per_s, run.latest_sample = msg["epoch"], msg["step"], msg["images_per_s"], msg["sample"]
        out.append({
            "type": "epoch", "epoch": msg["epoch"], "images_per_s": msg["images_per_s"], "seconds": msg["seconds"],
            "sample": {"epoch": msg["epoch"], "name": msg["sample"], "url": sample_url(run.id, msg["sample"])},
            "checkpoints": checkpoints_json(session, run.id) if msg.get("checkpoints") else None,
        })  # fmt: skip
    elif kind == "status":
        apply_status(session, run, run_dir, msg)
    else:
        raise ValueError(f"unknown message type {kind!r}")
    session.flush()
    out.append({"type": "run", "run": run_json(run)})
    return out


def apply_status(session: Session, run: Run, run_dir: Path, msg: dict) -> None:
    status = msg["status"]
    if status == "running":
        # A new attempt starts after its checkpoint: forget what an earlier attempt logged past it.
        session.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > msg["step"]))
        session.execute(delete(Sample).where(Sample.run_id == run.id, Sample.epoch > msg["epoch"]))
        run.step, run.epoch = msg["step"], msg["epoch"]
        run.total_steps, run.total_epochs, run.device = msg["total_steps"], msg["total_epochs"], msg["device"]
        run.started_at = run.started_at or utcnow()
        run.error = None
        latest = session.scalars(
            select(Sample.name).where(Sample.run_id == run.id).order_by(Sample.epoch.desc()).limit(1)
        ).first()
        run.latest_sample = latest
    else:
        _register_checkpoints(session, run, run_dir, msg.get("checkpoints", []), msg.get("epoch", run.epoch))
        run.finished_at = utcnow()
        if status == "failed":
            run.error = msg.get("error") or "failed"
            if msg.get("traceback"):
                run.error += "\n\n" + msg["traceback"]
        else:
            run.step = msg.get("step", run.step)
    run.status = status
