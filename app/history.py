"""A run's metric history as the pages and the API read it.

Pages get buckets: the rows grouped in SQL into buckets of W steps (bucket `b` holds steps `b*W+1 .. (b+1)*W`), per
series the mean, min, max and count of its values. W (`bucket_width`) is a power of two fixed by the run's planned
steps, not by how many rows exist yet, so a page watching a run live puts every live row into the bucket the server
would have: a page smooths the same per-bucket means live and after a reload, holds at most ~MAX_BUCKETS points however
long the run, and the min/max envelope keeps spikes visible. A run of up to MAX_BUCKETS steps has W = 1: raw rows.

The API's `metrics` returns whole rows instead, thinned by keeping each series' min and max per bucket.
Every function here is synchronous and takes a Session; async callers run them in a thread.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import METRIC_COLUMNS, Metric, Run
from trainer.protocol import METRICS, STATS

MAX_BUCKETS = 2000
AGGREGATES = ("mean", "min", "max", "count")
SHOWN = tuple(m.name for m in METRICS if not m.optional)  # the series a chart shows until someone ticks more


def bucket_width(total_steps: int | None, last_step: int) -> int:
    """The smallest power of two W that fits the run's planned steps (its last step, when no plan is known) into
    MAX_BUCKETS buckets."""
    steps = total_steps or last_step
    width = 1
    while -(-steps // width) > MAX_BUCKETS:
        width *= 2
    return width


def buckets(session: Session, run: Run, after: int = 0) -> dict[str, Any]:
    """The history after step `after`, bucketed:
    `{"width": W, "total_steps": the total W was chosen for, "step": [last step of each bucket], "epoch": [...],
    "rows": [rows in each bucket], "time": [newest wall time in each bucket],
    "<series>": {"mean": [...], "min": [...], "max": [...], "count": [...]}, ...}`
    (mean, min and max are null in a bucket where the series has no value; count counts its values)."""
    width = bucket_width(run.total_steps, run.step)
    bucket = (Metric.step - 1) // width if width > 1 else Metric.step
    columns = [func.max(Metric.step), func.max(Metric.epoch), func.count()]
    for name in STATS:
        value = getattr(Metric, name)
        columns += [func.avg(value), func.min(value), func.max(value), func.count(value)]
    columns.append(func.max(Metric.time))
    rows = session.execute(
        select(*columns).where(Metric.run_id == run.id, Metric.step > after).group_by(bucket).order_by(bucket)
    ).all()
    cols = list(zip(*rows)) if rows else [()] * len(columns)
    out: dict[str, Any] = {"width": width, "total_steps": run.total_steps, "step": list(cols[0]),
                           "epoch": list(cols[1]), "rows": list(cols[2]), "time": list(cols[-1])}  # fmt: skip
    for i, name in enumerate(STATS):
        out[name] = {agg: list(cols[3 + 4 * i + j]) for j, agg in enumerate(AGGREGATES)}
    return out


def metrics(session: Session, run_id: int, after: int = 0, max_points: int = 2000) -> dict[str, list]:
    """Columnar rows after step `after`, at most `max_points` of them, chosen so that spikes survive (for the API)."""
    rows = session.execute(
        select(*(getattr(Metric, c) for c in METRIC_COLUMNS))
        .where(Metric.run_id == run_id, Metric.step > after)
        .order_by(Metric.step)
    ).all()
    keep = downsample_indices(rows, max_points)
    cols = list(zip(*(rows[i] for i in keep))) if keep else [[] for _ in METRIC_COLUMNS]
    return {name: list(col) for name, col in zip(METRIC_COLUMNS, cols)}


def downsample_indices(rows: list, max_points: int) -> list[int]:
    """Split the rows into buckets and keep, per bucket, the rows holding each shown series' min and max (so a spike is
    never averaged away), plus the first and last row."""
    n = len(rows)
    if n <= max_points:
        return list(range(n))
    positions = [METRIC_COLUMNS.index(s) for s in SHOWN]
    buckets = max(1, (max_points - 2) // (2 * len(SHOWN)))
    keep = {0, n - 1}
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        for p in positions:
            values = [(rows[i][p], i) for i in range(lo, hi) if rows[i][p] is not None and not math.isnan(rows[i][p])]
            if values:
                keep.add(min(values)[1])
                keep.add(max(values)[1])
    return sorted(keep)
