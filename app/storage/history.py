"""A run's metric history as the pages and the API read it.

Pages get buckets: the rows grouped into buckets of W steps (bucket `b` holds steps `b*W+1 .. (b+1)*W`), per series the
mean, min, max and count of its values. W (`bucket_width`) is a power of two fixed by the run's planned steps, not by
how many rows exist yet, so a page watching a run live puts every live row into the bucket the server would have: a
page smooths the same per-bucket means live and after a reload, holds at most ~MAX_BUCKETS points however long the
run, and the min/max envelope keeps spikes visible. A run of up to MAX_BUCKETS steps has W = 1: raw rows.

The buckets are stored (`db.metric_buckets`): ingest calls `refresh` every REFRESH_EVERY steps, so opening a run of
200,000 steps reads ~1,600 stored buckets (~10 ms) instead of aggregating 200,000 rows (~300 ms). Stored buckets are exact for
the steps they cover; `forget` drops the ones a change to the rows touches, and a reader aggregates what is not stored
yet (the last, filling bucket and anything newer) from the rows, so what a page reads never depends on when the last
refresh ran.

The API's `metrics` returns whole rows instead, thinned by keeping each series' min and max per bucket.
Every function here is synchronous; async callers run them in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, literal, select
from sqlalchemy.orm import Session, sessionmaker

from app.storage.db import BUCKET_AGGREGATES, Metric, Run, metric_buckets
from trainer.protocol import METRICS, ROW_COLUMNS, STATS

MAX_BUCKETS = 2000
AGGREGATES = ("mean", "min", "max", "count")
SHOWN = tuple(m.name for m in METRICS if not m.optional)  # the series a chart shows until someone ticks more
STORED = ("bucket", "step", "epoch", "time", "rows", *(f"{n}_{a}" for n in STATS for a in BUCKET_AGGREGATES))


def bucket_width(total_steps: int | None, last_step: int) -> int:
    """The smallest power of two W that fits the run's planned steps (its last step, when no plan is known) into
    MAX_BUCKETS buckets."""
    steps = total_steps or last_step
    width = 1
    while -(-steps // width) > MAX_BUCKETS:
        width *= 2
    return width


def _aggregate(run_id: int, width: int, after: int) -> Select:
    """The rows after step `after` in buckets of `width`, as the columns of STORED."""
    bucket = (Metric.step - 1) // width
    columns = [bucket, func.max(Metric.step), func.max(Metric.epoch), func.max(Metric.time), func.count()]
    for name in STATS:
        value = getattr(Metric, name)
        columns += [func.sum(value), func.min(value), func.max(value), func.count(value)]
    return select(*columns).where(Metric.run_id == run_id, Metric.step > after).group_by(bucket).order_by(bucket)


# Ingest refreshes the stored buckets when a batch's rows reach a multiple of this many steps: that seldom keeps ingest
# cheap, and leaves a reader at most REFRESH_EVERY + W rows to aggregate beyond the stored buckets.
REFRESH_EVERY = 256


def reaches_multiple(first: int, last: int, every: int) -> bool:
    """Whether rows of steps `first..last` reach a multiple of `every`: when ingest does what it does every so many
    steps (REFRESH_EVERY here, health.BATCH_EVERY), whatever steps each worker message holds."""
    return (first - 1) // every != last // every


def forget(session: Session, run_id: int, after: int) -> None:
    """Drop the stored buckets that hold any step after `after`: the rows there are about to change."""
    t = metric_buckets
    session.execute(delete(t).where(t.c.run_id == run_id, (t.c.bucket + 1) * t.c.width > after))


def refresh(session: Session, run: Run) -> None:
    """Store the buckets of the rows not yet stored (and the last stored one again: it may have been filling). Buckets
    of another width (the run's plan changed) are dropped first."""
    t = metric_buckets
    width = bucket_width(run.total_steps, run.step)
    session.execute(delete(t).where(t.c.run_id == run.id, t.c.width != width))
    last = session.execute(
        select(t.c.bucket, t.c.step).where(t.c.run_id == run.id).order_by(t.c.bucket.desc()).limit(1)
    ).first()
    newest = session.scalar(select(func.max(Metric.step)).where(Metric.run_id == run.id))
    if newest is None or (last is not None and last.step >= newest):
        return
    start = last.bucket if last is not None else 0
    session.execute(delete(t).where(t.c.run_id == run.id, t.c.bucket >= start))
    rows = _aggregate(run.id, width, start * width).add_columns(literal(run.id), literal(width))
    session.execute(insert(t).from_select([*STORED, "run_id", "width"], rows))


def refresh_all(sessions: sessionmaker) -> None:
    """Refresh every run's buckets, one transaction per run: at start-up, so a database from before buckets were stored
    gains them once (later, each is a no-op of two index lookups)."""
    with sessions() as s:
        run_ids = s.scalars(select(Run.id)).all()
    for run_id in run_ids:
        with sessions.begin() as s:
            if run := s.get(Run, run_id):
                refresh(s, run)


def buckets(session: Session, run: Run, after: int = 0) -> dict[str, Any]:
    """The history after step `after`, bucketed:
    `{"width": W, "total_steps": the total W was chosen for, "step": [last step of each bucket], "epoch": [...],
    "time": [...], "rows": [rows in each bucket], "<series>": {"mean": [...], "min": [...], "max": [...], "count": [...]},
    ...}` (mean, min and max are null in a bucket where the series has no value; count counts its values)."""
    width = bucket_width(run.total_steps, run.step)
    rows: list = []
    if after == 0:  # the stored buckets but the last one (it may be filling), then the rest from the rows
        t = metric_buckets
        rows = session.execute(
            select(*(t.c[c] for c in STORED)).where(t.c.run_id == run.id, t.c.width == width).order_by(t.c.bucket)
        ).all()[:-1]
        after = (rows[-1].bucket + 1) * width if rows else 0
    rows += session.execute(_aggregate(run.id, width, after)).all()
    cols = list(zip(*rows)) if rows else [()] * len(STORED)
    out: dict[str, Any] = {"width": width, "total_steps": run.total_steps, "step": list(cols[1]),
                           "epoch": list(cols[2]), "time": list(cols[3]), "rows": list(cols[4])}  # fmt: skip
    for i, name in enumerate(STATS):
        total, low, high, count = cols[5 + 4 * i : 9 + 4 * i]
        mean = [None if n == 0 else s / n for s, n in zip(total, count)]
        out[name] = {"mean": mean, "min": list(low), "max": list(high), "count": list(count)}
    return out


CHUNK = 5000  # rows per fetch when the API's rows are read


def metrics(
    session: Session, run_id: int, after: int = 0, max_points: int = 2000, before: int | None = None
) -> dict[str, list]:
    """Columnar rows after step `after` (and before step `before`, when given), at most `max_points` of them, chosen
    so that spikes survive (for the API). The rows are counted, then read CHUNK at a time in one pass that keeps only
    what it returns: a run of a million steps is never in memory whole."""
    where = [Metric.run_id == run_id, Metric.step > after, *([Metric.step < before] if before is not None else [])]
    n = session.scalar(select(func.count()).select_from(Metric).where(*where))
    query = select(*(getattr(Metric, c) for c in ROW_COLUMNS)).where(*where).order_by(Metric.step)
    rows = session.execute(query.execution_options(yield_per=CHUNK))
    kept = [row for _, row in thinned(rows, n, max_points)]
    cols = list(zip(*kept)) if kept else [[] for _ in ROW_COLUMNS]
    return {name: list(col) for name, col in zip(ROW_COLUMNS, cols)}


def thinned(rows: Iterable[Sequence], n: int, max_points: int) -> list[tuple[int, Sequence]]:
    """(index, row) of the `n` rows to keep, in order, in one pass that holds one bucket's rows at a time: all of them
    when they are at most `max_points`; else the rows split into buckets and, per bucket, the rows holding each shown
    series' min and max (so a spike is never averaged away), plus the first and last row."""
    if n <= max_points:
        return list(enumerate(rows))
    positions = [ROW_COLUMNS.index(s) for s in SHOWN]
    buckets = max(1, (max_points - 2) // (2 * len(SHOWN)))
    kept: dict[int, Sequence] = {}
    bucket: list[Sequence] = []
    b, lo, hi = 0, 0, n // buckets

    def keep(bucket: list[Sequence], lo: int) -> None:
        for p in positions:
            values = [(row[p], i) for i, row in enumerate(bucket, lo) if row[p] is not None and not math.isnan(row[p])]
            if values:
                for _, i in (min(values), max(values)):
                    kept[i] = bucket[i - lo]

    for i, row in enumerate(rows):
        if i in (0, n - 1):
            kept[i] = row
        while i >= hi:  # this row starts the next bucket
            keep(bucket, lo)
            b, lo, hi, bucket = b + 1, hi, (b + 2) * n // buckets, []
        bucket.append(row)
    keep(bucket, lo)
    return sorted(kept.items(), key=lambda item: item[0])
