"""The database: runs, their per-batch metrics, sample grids, checkpoints, and the worker messages already stored.

SQLite in WAL mode: readers never wait for the writer, and `busy_timeout` makes writers queue instead of failing with
"database is locked" when several runs report at once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import JSON, ForeignKey, Integer, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from trainer.protocol import ROW_COLUMNS


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    status: Mapped[str] = mapped_column(default="queued", index=True)
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    step: Mapped[int] = mapped_column(default=0)
    epoch: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int | None]
    total_epochs: Mapped[int | None]
    images_per_s: Mapped[float | None]
    loss_d: Mapped[float | None]
    loss_g: Mapped[float | None]
    d_x: Mapped[float | None]
    d_g_z: Mapped[float | None]
    latest_sample: Mapped[str | None]
    device: Mapped[str | None]
    pid: Mapped[int | None]
    exit_code: Mapped[int | None]
    attempt: Mapped[int] = mapped_column(default=0)
    resume: Mapped[bool] = mapped_column(default=False)  # the next start continues from resume.pt
    token: Mapped[str | None]  # sha256 of the current worker's token (hash_token); kept so a restarted server accepts it
    error: Mapped[str | None]
    journal_offset: Mapped[int | None]  # bytes of runs/<id>/journal.jsonl already replayed (app/journal.py)


class Metric(Base):
    __tablename__ = "metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[int]
    batch: Mapped[int]
    loss_d: Mapped[float | None]
    loss_d_real: Mapped[float | None]
    loss_d_fake: Mapped[float | None]
    loss_g: Mapped[float | None]
    d_x: Mapped[float | None]
    d_g_z: Mapped[float | None]
    time: Mapped[float]


class Sample(Base):
    __tablename__ = "samples"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    size: Mapped[int | None]


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(primary_key=True)
    size: Mapped[int]
    epoch: Mapped[int]
    sha256: Mapped[str | None]


class Received(Base):
    """One row per worker message stored, so a message sent again after a reconnect is stored once."""

    __tablename__ = "received"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)


def hash_token(token: str) -> str:
    """Worker tokens are stored hashed: the database alone does not let anyone report into a run."""
    return hashlib.sha256(token.encode()).hexdigest()


METRIC_COLUMNS = ROW_COLUMNS


def make_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """A database made by an older GANboard gains the nullable columns added since (create_all only makes tables)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
