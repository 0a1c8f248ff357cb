"""Reading runs from the database: the run JSON, its samples and checkpoints, and metric history (downsampled).

Worker messages are stored by app.ingest.

Every function here is synchronous and takes a Session; async callers run them in a thread.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import METRIC_COLUMNS, Checkpoint, Metric, Run, Sample, sample_url
from trainer.protocol import Status, checkpoint_label

SERIES = ("loss_d", "loss_g", "d_x", "d_g_z")


def _utc(t: datetime) -> str:
    """Times are stored as naive UTC; the JSON says so with a Z, which a browser's Date() needs."""
    return (t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t).isoformat() + "Z"


UtcTime = Annotated[datetime, PlainSerializer(_utc, return_type=str)]


class RunOut(BaseModel):
    """A run as the API and the pages see it, read from its ORM row (derived values are properties of `Run`)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: Status
    config: dict[str, Any]
    created_at: UtcTime
    started_at: UtcTime | None
    finished_at: UtcTime | None
    step: int
    epoch: int
    total_steps: int | None
    total_epochs: int | None
    images_per_s: float | None = Field(description="over the last ~20 s of training; null unless running and measured")
    eta_seconds: float | None = Field(description="the steps left at `images_per_s`; null when that is")
    active_seconds: float = Field(description="time spent running, summed over attempts")
    loss_d: float | None
    loss_g: float | None
    d_x: float | None
    d_g_z: float | None
    latest_sample: str | None = Field(validation_alias=AliasChoices("latest_sample_url", "latest_sample"), description="URL")
    error: str | None
    attempt: int = Field(description="how many times a worker was started for it")
    resumable: bool = Field(description="Resume would start it again; false while it is active or when its data cannot load")
    pid: int | None
    exit_code: int | None
    device: str | None = Field(description="what the worker trains on, as it reported")
    bf16: bool | None = Field(description="whether the worker trains with bfloat16 autocast, as it reported")


def run_json(run: Run) -> dict[str, Any]:
    return RunOut.model_validate(run).model_dump(mode="json")


def samples_json(session: Session, run_id: int) -> list[dict]:
    rows = session.scalars(select(Sample).where(Sample.run_id == run_id).order_by(Sample.epoch))
    return [{"epoch": s.epoch, "name": s.name, "size": s.size, "url": sample_url(run_id, s.name)} for s in rows]


def checkpoints_json(session: Session, run_id: int) -> list[dict]:
    rows = session.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.name))
    return [
        {"name": c.name, "label": checkpoint_label(c.name), "size": c.size, "epoch": c.epoch, "step": c.step,
         "sha256": c.sha256, "url": f"/api/runs/{run_id}/checkpoints/{c.name}"}
        for c in rows
    ]  # fmt: skip


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
