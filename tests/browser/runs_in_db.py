"""Runs written straight into a server's database through the ORM, for page tests and benches that need a long
history without training it: rows are built from the protocol's ROW_COLUMNS, so a new metric column is filled too."""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import insert

from app.storage import history
from app.storage.db import Metric, Run, make_engine, make_sessionmaker
from trainer.config import TrainConfig
from trainer.protocol import ROW_COLUMNS, STATS


def row(step: int, epoch: int = 1) -> dict:
    """One batch row with values that wander (so smoothing shows), loss_g missing on every fifth step, no NaN."""
    values = {name: 1.0 + 0.5 * math.sin(step / (7 + i)) + (step % 13) / 26 for i, name in enumerate(STATS)}
    values["loss_g"] = None if step % 5 == 0 else values["loss_g"]
    return {"step": step, "epoch": epoch, "batch": step, "time": float(step), **values}


def write_run(database: Path | str, batches: int, total_steps: int | None = None, spike: dict[int, float] | None = None,
              store_buckets: bool = True, per_epoch: int | None = None) -> int:
    """A completed run of `batches` rows (steps 1..batches) planned for `total_steps`, in `database` (a URL, or a runs
    dir: its SQLite file); `spike` maps step -> loss_d; its buckets stored as ingest stores them, unless
    `store_buckets` is False (a database from before they were); epochs of `per_epoch` steps (one epoch: all of them)."""
    per_epoch = per_epoch or max(batches, 1)
    engine = make_engine(database if isinstance(database, str) else f"sqlite:///{database / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            epochs = max(1, -(-batches // per_epoch))
            run = Run(name=f"{batches:,} batches", status="completed", config=TrainConfig().model_dump(), step=batches,
                      epoch=epochs, total_steps=total_steps or batches, total_epochs=epochs, attempt=1)  # fmt: skip
            s.add(run)
            s.flush()
            for lo in range(1, batches + 1, 10_000):
                rows = [row(step, (step - 1) // per_epoch + 1) for step in range(lo, min(lo + 10_000, batches + 1))]
                for r in rows:
                    r["loss_d"] = (spike or {}).get(r["step"], r["loss_d"])
                s.execute(insert(Metric), [{c: r[c] for c in ROW_COLUMNS} | {"run_id": run.id} for r in rows])
            if store_buckets:
                history.refresh(s, run)  # as ingest does after storing rows
            return run.id
    finally:
        engine.dispose()
