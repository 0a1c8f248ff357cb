"""The database: runs, their per-batch metrics, sample grids, checkpoints, health alerts, machine samples, and the
worker messages already stored.

SQLite in WAL mode: readers never wait for the writer, and `busy_timeout` makes writers queue instead of failing with
"database is locked" when several runs report at once. PostgreSQL (psycopg 3) needs neither: its readers never wait
for writers, and a writer waits for a row another one holds. What else differs is in docs/postgresql.md.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, Column, Float, ForeignKey, Index, Integer, MetaData, Table, create_engine, event, inspect
from sqlalchemy import literal, text
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from trainer.protocol import RESUMABLE, STATS, SYSTEM_FIELDS, Status, SystemMessage


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """A run. Its `status` and the fields that move with it are written by app.storage.lifecycle.transition only."""

    __tablename__ = "runs"
    __table_args__ = {"sqlite_autoincrement": True}  # an id is never given twice, even after the newest run is deleted

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    status: Mapped[str] = mapped_column(default=Status.QUEUED, index=True)
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    step: Mapped[int] = mapped_column(default=0)
    epoch: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int | None]
    total_epochs: Mapped[int | None]
    batches_per_epoch: Mapped[int | None]  # as the worker reported when it started
    images_per_s: Mapped[float | None]  # over the last ~20 s of this attempt's batch rows
    attempt_images_per_s: Mapped[float | None]  # over this attempt's batch rows so far: what the ETA is made from
    loss_d: Mapped[float | None]
    loss_g: Mapped[float | None]
    d_x: Mapped[float | None]
    d_g_z: Mapped[float | None]
    latest_sample: Mapped[str | None]
    swd: Mapped[float | None]  # the latest epoch's sample quality, and the best so far (lower is better)
    best_swd: Mapped[float | None]
    fid: Mapped[float | None]
    best_fid: Mapped[float | None]
    fid_at: Mapped[str | None]  # what the worker computed FID at: "75 px, CPU" (a CPU's score is not a GPU's)
    scoring: Mapped[int | None]  # the epoch whose FID/KID the worker is computing now (trainer/sidework.py)
    best_by: Mapped[str | None]  # the score that chose the best checkpoint: "kid" or "swd" (protocol.BEST_BY)
    device: Mapped[str | None]  # what the worker reported it trains on
    bf16: Mapped[bool | None]
    graphed: Mapped[bool | None]  # the worker's step runs as CUDA graphs (false: eagerly), as it reported
    running_since: Mapped[datetime | None]  # start of the current attempt while it runs
    ran_seconds: Mapped[float] = mapped_column(default=0.0)  # time spent running by the attempts that ended
    unresumable: Mapped[str | None]  # why Resume would fail the same way (its data cannot load)
    pid: Mapped[int | None]
    executor: Mapped[str | None]  # where it trains: "local" (also when null: a run from before executors) or "slurm"
    job_id: Mapped[str | None]  # its current worker in that executor: a pid, a Slurm job id; null when there is none
    job_state: Mapped[str | None]  # what the executor says of that worker, e.g. "pending: Resources"
    slurm: Mapped[dict | None] = mapped_column(JSON)  # a Slurm run's own job (app/runs/executors/slurm.py SlurmResources)
    requeued: Mapped[int] = mapped_column(default=0)  # times it was requeued by itself after a time limit or preemption
    exit_code: Mapped[int | None]
    attempt: Mapped[int] = mapped_column(default=0)
    resume: Mapped[bool] = mapped_column(default=False)  # the next start continues from resume.pt
    token: Mapped[str | None]  # sha256 of the current worker's token (hash_token); kept so a restarted server accepts it
    error: Mapped[str | None]
    # bytes of runs/<id>/journal.jsonl already replayed (app/storage/journal.py); 64 bits, as every SQLite integer is
    journal_offset: Mapped[int | None] = mapped_column(BigInteger)
    # What people write about a run (PATCH /api/runs/{id}); never touched by the supervisor or a worker.
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    note: Mapped[str | None]
    # Where each attempt after the first began training ([{"attempt", "step"}]): a resume, a restart after an outage;
    # the run page marks them on its charts.
    restarts: Mapped[list[dict] | None] = mapped_column(JSON)
    # Where each attempt that trained ended, and how ([{"attempt", "step", "status"}]: cancelled, failed, interrupted,
    # completed); written by app.storage.lifecycle.transition, marked on the run page's charts beside the restarts.
    stops: Mapped[list[dict] | None] = mapped_column(JSON)
    # Settings changed when it was resumed or extended: [{"at", "step", "epoch", "changed": {key: [old, new]}}]
    changes: Mapped[list[dict] | None] = mapped_column(JSON)
    archived: Mapped[bool] = mapped_column(default=False)  # hidden from the run list's default view, not deleted
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id"), index=True)  # the sweep that made it (app/runs/sweeps.py)
    alerts: Mapped[list[Alert]] = relationship(lazy="selectin", cascade="all, delete-orphan", passive_deletes=True)

    @property
    def alerts_newest_first(self) -> list[Alert]:
        return sorted(self.alerts, key=lambda a: a.id or 0, reverse=True)

    @property
    def active_seconds(self) -> float:
        """Time spent running, over all attempts; time queued, cancelled or failed does not count."""
        now = (utcnow() - self.running_since).total_seconds() if self.running_since else 0.0
        return self.ran_seconds + max(0.0, now)

    @property
    def eta_seconds(self) -> float | None:
        """The steps left at this attempt's average speed: steadier than the last seconds' speed, which a CPU run's
        FID or another run starting moves for a while."""
        if self.status != Status.RUNNING or not self.attempt_images_per_s or self.total_steps is None:
            return None
        return max(0, self.total_steps - self.step) * self.config["batch_size"] / self.attempt_images_per_s

    @property
    def epoch_in_progress(self) -> int | None:
        """The epoch its newest step lies in, when that is past the last completed one (`epoch` counts completed
        epochs): while it trains, and where it stopped inside an epoch. The page, the list and the checkpoint labels
        ("in epoch 4, step 90") all say it this way."""
        if self.total_epochs is not None and self.epoch >= self.total_epochs:
            return None
        if self.status == Status.RUNNING or (self.batches_per_epoch and self.step > self.epoch * self.batches_per_epoch):
            return self.epoch + 1
        return None

    @property
    def mean_images_per_s(self) -> float | None:
        """Images trained over the time it ran, summed over attempts (data loading and epoch ends included)."""
        active = self.active_seconds
        return self.step * self.config["batch_size"] / active if active > 0 and self.step else None

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE and self.unresumable is None

    @property
    def latest_sample_url(self) -> str | None:
        return sample_url(self.id, self.latest_sample) if self.latest_sample else None


class Sweep(Base):
    """A search over settings (app/runs/sweeps.py): its runs are ordinary runs with `sweep_id` set, made in order."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    spec: Mapped[dict] = mapped_column(JSON)  # app.runs.sweeps.SweepSpec: method, base config, axes, seeds, trials
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped: Mapped[bool] = mapped_column(default=False)  # cancelled: Optuna asks for no more trials until a resume
    pruned: Mapped[dict | None] = mapped_column(JSON)  # run id (str) -> why the pruner stopped it, until it is `pruned`


def sample_url(run_id: int, name: str) -> str:
    return f"/api/runs/{run_id}/samples/{name}"


class Metric(Base):
    """One batch row of a run. Its metric columns follow protocol.STATS, as the messages' rows do: a metric added there
    becomes a nullable column here (and in metric_buckets), which make_engine adds to a database made before."""

    __table__ = Table(
        "metrics",
        Base.metadata,
        Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        Column("step", Integer, primary_key=True),
        Column("epoch", Integer, nullable=False),
        Column("batch", Integer, nullable=False),
        *(Column(name, Float) for name in STATS),
        Column("time", Float, nullable=False),
        Index("ix_metrics_run_time", "run_id", "time"),  # the recent rows that images/s is measured on
    )


BUCKET_AGGREGATES = ("sum", "min", "max", "n")

# A run's metric rows summed up per bucket of `width` steps (app/storage/history.py keeps it in step with the rows), so a page
# that opens a run of 200,000 steps reads ~1,600 rows instead of aggregating 200,000. Its columns follow STATS.
metric_buckets = Table(
    "metric_buckets",
    Base.metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("bucket", Integer, primary_key=True),  # bucket b holds steps b*width+1 .. (b+1)*width
    Column("width", Integer, nullable=False),
    Column("step", Integer, nullable=False),  # the last step in it
    Column("epoch", Integer, nullable=False),
    Column("time", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    *(Column(f"{name}_{agg}", Integer if agg == "n" else Float) for name in STATS for agg in BUCKET_AGGREGATES),
)


class Sample(Base):
    __tablename__ = "samples"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    size: Mapped[int | None]
    swd: Mapped[float | None]
    fid: Mapped[float | None]
    kid: Mapped[float | None]
    diversity: Mapped[float | None]


class Alert(Base):
    """Something app.storage.health found wrong with a run, in words. Open until `cleared_step`; one open alert per kind."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str]
    step: Mapped[int]
    epoch: Mapped[int]
    message: Mapped[str]
    advice: Mapped[str]
    cleared_step: Mapped[int | None]


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes: a checkpoint may pass 2 GiB, PostgreSQL's integer
    epoch: Mapped[int]
    step: Mapped[int | None]
    sha256: Mapped[str | None]


def _system_column(name: str) -> Column:
    """A SystemMessage field as a column: an integer or a float, null where the message may leave it out."""
    field = SystemMessage.model_fields[name]
    return Column(name, Integer if field.annotation is int else Float, nullable=not field.is_required())


class SystemSample(Base):
    """The worker's machine at one moment, kept across attempts, as time went by. Its columns follow
    protocol.SystemMessage's fields (SYSTEM_FIELDS)."""

    __table__ = Table(
        "system_samples",
        Base.metadata,
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        # images/s is measured between samples of one attempt (null: stored before it was kept)
        Column("attempt", Integer),
        *(_system_column(name) for name in SYSTEM_FIELDS),
        Index("ix_system_samples_run_time", "run_id", "time"),
    )


class Received(Base):
    """One row per worker message stored, so a message sent again after a reconnect is stored once."""

    __tablename__ = "received"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)


def hash_token(token: str) -> str:
    """Worker tokens are stored hashed: the database alone does not let anyone report into a run."""
    return hashlib.sha256(token.encode()).hexdigest()



def make_engine(url: str) -> Engine:
    """An engine with the schema made or brought up to date. A pooled connection to a database server is checked before
    use (`pool_pre_ping`): after the server restarts, requests get a new connection instead of an error."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)

    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    for table in Base.metadata.sorted_tables:  # create_all makes an index only with its table
        for index in table.indexes:
            index.create(engine, checkfirst=True)
    if engine.dialect.name == "sqlite":
        _autoincrement_runs(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """A database made by an older GANboard gains the columns added since (create_all only makes tables): nullable
    ones, and ones with a constant default, which fills the rows already there (written as this dialect's literal:
    PostgreSQL's boolean takes `false`, not 0)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                if column.nullable:
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
                elif column.default is not None and isinstance(column.default.arg, (bool, int, float, str)):
                    value = literal(column.default.arg, column.type).compile(engine, compile_kwargs={"literal_binds": True})
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind} NOT NULL DEFAULT {value}'))


def _autoincrement_runs(engine: Engine) -> None:
    """An older runs table lacks AUTOINCREMENT, so SQLite gave a deleted newest run's id again. SQLite cannot alter a
    table's key: copy the runs into a table that has it, in one transaction (sqlite.org/lang_altertable.html, "making
    other kinds of table schema changes"). The copied ids set the sequence's floor."""
    with engine.connect() as conn:
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").scalar_one()
        have = {c["name"] for c in inspect(conn).get_columns("runs")}
    if "AUTOINCREMENT" in sql.upper():
        return
    metadata = MetaData()
    for key in Run.__table__.foreign_keys:  # the tables runs refers to (sweeps), so its copy's keys resolve
        key.column.table.to_metadata(metadata)
    new = Run.__table__.to_metadata(metadata, name="runs_new")
    columns = ", ".join(f'"{c.name}"' for c in Run.__table__.columns if c.name in have)
    script = ";\n".join([
        "PRAGMA foreign_keys=OFF",  # dropping the old table must not delete its runs' metrics
        "BEGIN",
        str(CreateTable(new).compile(engine)),
        f"INSERT INTO runs_new ({columns}) SELECT {columns} FROM runs",
        "DROP TABLE runs",
        "ALTER TABLE runs_new RENAME TO runs",
        *(str(CreateIndex(index).compile(engine)) for index in Run.__table__.indexes),
        "COMMIT",
        "PRAGMA foreign_keys=ON",
    ])  # fmt: skip
    raw = engine.raw_connection()
    try:
        raw.driver_connection.executescript(script)
    except Exception:
        raw.invalidate()  # rolled back, and never reused with foreign keys off
        raise
    raw.close()


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
