"""Reading runs from the database: the run JSON, its samples and checkpoints, and metric history (downsampled).

Worker messages are stored by app.ingest.

Every function here is synchronous and takes a Session; async callers run them in a thread.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import METRIC_COLUMNS, Checkpoint, Metric, Run, Sample

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


def metrics(session: Session, run_id: int, after: int = 0, max_points: int = 2000) -> dict[str, list]:
    """Columnar history after step `after`, at most `max_points` rows, chosen so that spikes survive."""
    rows = session.execute(
        select(*(getattr(Metric, c) for c in METRIC_COLUMNS))
        .where(Metric.run_id == run_id, Metric.step > after)
        .order_by(Metric.step)
    ).all()
    keep = downsample_indices(rows, max_points)
    cols = list(zip(*(rows[i] for i in keep))) if keep else [[] for _ in METRIC_COLUMNS]
    return {name: list(col) for name, col in zip(METRIC_COLUMNS, cols)}


def downsample_indices(rows: list, max_points: int) -> list[int]:
    """Split the rows into buckets and keep, per bucket, the rows holding each series' min and max (so a spike in any
    series is never averaged away), plus the first and last row."""
    n = len(rows)
    if n <= max_points:
        return list(range(n))
    positions = [METRIC_COLUMNS.index(s) for s in SERIES]
    buckets = max(1, (max_points - 2) // (2 * len(SERIES)))
    keep = {0, n - 1}
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        for p in positions:
            values = [(rows[i][p], i) for i in range(lo, hi) if rows[i][p] is not None and not math.isnan(rows[i][p])]
            if values:
                keep.add(min(values)[1])
                keep.add(max(values)[1])
    return sorted(keep)


def snapshot(session: Session, run: Run, after: int = 0, max_points: int = 2000) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "run": run_json(run),
        "metrics": metrics(session, run.id, after, max_points),
        "samples": samples_json(session, run.id),
        "checkpoints": checkpoints_json(session, run.id),
    }
