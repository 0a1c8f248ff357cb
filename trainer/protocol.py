"""The contract between a worker and the server: run states, metric columns, messages and the run folder's layout.

Both sides import this one torch-free module, as TensorBoard's writers and readers share its event definition: the
worker builds its messages with these models, and the server parses each message with `parse_message` exactly once, so
a malformed or hostile message is refused before anything is stored. A new per-batch metric is added to `METRICS` and
nowhere else: the loop's stats vector, the database columns, the API and the page's charts all follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

# -- run states ----------------------------------------------------------------------------------------------------


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its worker was lost while the server was down
    PRUNED = "pruned"  # a sweep's pruner stopped it early (app/runs/study.py): cancelled, then marked so, with the reason


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED}),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED, Status.PRUNED}),
    Status.INTERRUPTED: frozenset({Status.QUEUED}),
    Status.COMPLETED: frozenset({Status.QUEUED}),  # "train N more epochs" (POST extend), from its resume.pt
    Status.PRUNED: frozenset(),
}
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
RESUMABLE = frozenset({Status.FAILED, Status.CANCELLED, Status.INTERRUPTED})  # Resume; a completed run is extended
ENDED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED, Status.PRUNED})


def can_move(current: str, new: str) -> bool:
    return Status(new) in TRANSITIONS[Status(current)]


# -- metrics -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str  # column name in messages, the database and the API
    label: str  # what the page and the CLI call it
    chart: Literal["loss", "d", "grad"]  # the loss chart, the D(x)/D(G(z)) chart, or the gradient-norm chart
    optional: bool = False  # plotted only when the user ticks it on


# Per-batch statistics, in the order of the loop's stats vector. A NaN there (the net did not step) is sent as null.
METRICS: tuple[Metric, ...] = (
    Metric("loss_d", "loss_D", "loss"),
    Metric("loss_d_real", "loss_D(real)", "loss", optional=True),
    Metric("loss_d_fake", "loss_D(fake)", "loss", optional=True),
    Metric("loss_g", "loss_G", "loss"),
    Metric("d_x", "D(x)", "d"),
    Metric("d_g_z", "D(G(z))", "d"),
    Metric("grad_d", "|grad D|", "grad"),  # L2 norm of all of D's parameter gradients, before its optimiser step
    Metric("grad_g", "|grad G|", "grad"),
)
STATS: tuple[str, ...] = tuple(m.name for m in METRICS)
ADDED_LATER = ("grad_d", "grad_g")  # rows without them are still accepted (all null)
ROW_COLUMNS: tuple[str, ...] = ("step", "epoch", "batch", *STATS, "time")  # one batch row, as stored

MAX_INT = 2**63 - 1  # SQLite integers are 64-bit
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Positive = Annotated[int, Field(ge=1, le=MAX_INT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]

# -- the run folder ------------------------------------------------------------------------------------------------

CONFIG = "config.json"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
RESUME = "resume.pt"
WORKER_LOG = "worker.log"
JOURNAL = "journal.jsonl"
LATEST = ("netg.pth", "netd.pth")
BEST = ("netg_best.pth", "netd_best.pth")  # G and D at the epoch with the best score so far (BEST_BY)
_SERIES_RE = re.compile(r"^net[gd]_(\d{4,})\.pth$")  # netg_0010.pth: after epoch 10
_SNAPSHOT_RE = re.compile(r"^net[gd]_e(\d{4,})_s(\d+)\.pth$")  # netg_e0029_s000812.pth: in epoch 29, after step 812


def sample_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.png"


def epoch_checkpoint_names(epoch: int) -> tuple[str, str]:
    """G's and D's copies after a finished epoch: the `save_every` series."""
    return f"netg_{epoch:04d}.pth", f"netd_{epoch:04d}.pth"


def snapshot_checkpoint_names(epoch: int, step: int) -> tuple[str, str]:
    """G's and D's copies when a run stops inside `epoch` (1-based) after `step`; only the newest pair is kept."""
    return f"netg_e{epoch:04d}_s{step:06d}.pth", f"netd_e{epoch:04d}_s{step:06d}.pth"


def is_snapshot(name: str) -> bool:
    return _SNAPSHOT_RE.match(name) is not None


def is_numbered(name: str) -> bool:
    """One of the `save_every` series (netg_0010.pth), which `keep_last` prunes."""
    return _SERIES_RE.match(name) is not None


BEST_BY = ("kid", "swd")  # the scores that choose the best checkpoint (trainer/sidework.py says when each)


def checkpoint_label(name: str, *, epoch: int | None = None, by: str | None = None, score: float | None = None) -> str:
    """What a checkpoint file holds, in words: "after epoch 10", "in epoch 29, step 812", "latest", "resume state", and for
    the `BEST` pair, written at `epoch` for its score `by` ("kid" or "swd"; "fid" in runs from before) of `score`,
    "best SWD 36.5 (epoch 70)"."""
    if name in BEST:
        named = f"best {(by or 'score').upper()}" + (f" {score:.4g}" if score is not None else "")
        return f"{named} (epoch {epoch})"
    if m := _SERIES_RE.match(name):
        return f"after epoch {int(m[1])}"
    if m := _SNAPSHOT_RE.match(name):
        return f"in epoch {int(m[1])}, step {int(m[2])}"  # as the pages say where a run stopped (Run.epoch_in_progress)
    return {"resume.pt": "resume state"}.get(name, "latest")


def is_plain_name(name: str) -> bool:
    """A worker reports bare file names; anything else is never registered, so it can never be served."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


FileName = Annotated[str, Field(min_length=1, max_length=255)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class FileDigest(BaseModel):
    """A file as the worker wrote it: the server checks the size on disk and stores the hash instead of reading it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: Annotated[int, Field(ge=0)]
    sha256: Sha256


# -- messages, worker -> server --------------------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: Positive  # counts from 1 in each attempt
    attempt: Annotated[int, Field(ge=1, le=2**31 - 1)]  # given by the supervisor, one more on every start of a run


class _Rows(BaseModel):
    """A columnar chunk of batch rows: every column the same length, steps increasing, values finite or null."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _added_later(cls, data):
        """A metric added since a worker (or its journal) was written is null in its rows, not a refused message."""
        if isinstance(data, dict) and isinstance(data.get("step"), list):
            data = {**{name: [None] * len(data["step"]) for name in ADDED_LATER}, **data}
        return data

    @model_validator(mode="after")
    def _aligned(self) -> _Rows:
        if len({len(getattr(self, c)) for c in ROW_COLUMNS}) != 1:
            raise ValueError("every column must have one value per row")
        if any(b <= a for a, b in zip(self.step, self.step[1:])):
            raise ValueError("steps must increase")
        return self

    def records(self) -> list[dict]:
        return [dict(zip(ROW_COLUMNS, values)) for values in zip(*(getattr(self, c) for c in ROW_COLUMNS))]


Rows = create_model(
    "Rows",
    __base__=_Rows,
    step=(list[Positive], ...),
    epoch=(list[Positive], ...),
    batch=(list[Count], ...),
    time=(list[Finite], ...),
    **{name: (list[Finite | None], ...) for name in STATS},
)


class BatchMessage(_Message):
    type: Literal["batch"] = "batch"
    rows: Rows  # type: ignore[valid-type]


class _Files(BaseModel):
    """Checkpoint files a message reports: written (with their digests where the worker hashed them) and removed."""

    checkpoints: list[FileName] = []
    digests: dict[FileName, FileDigest] = {}
    removed: list[FileName] = []  # numbered copies beyond keep_last, older snapshots


class EpochMessage(_Files, _Message):
    """A finished epoch: its grid in samples/, the checkpoint files it wrote (none on most epochs), its scores.

    Sent by the worker's side thread in epoch order, after training has gone on; `scoring` is the epoch whose FID/KID
    is being computed meanwhile (a `ScoreMessage` brings it)."""

    type: Literal["epoch"] = "epoch"
    epoch: Positive
    step: Count
    sample: FileName
    images_per_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    # Sample quality (trainer/evaluate.py), lower is better: SWD every epoch, FID and KID when their budget allows.
    swd: Finite | None = None
    fid: Finite | None = None
    kid: Finite | None = None
    fid_at: Annotated[str, Field(max_length=64)] | None = None  # what FID was computed at, with it: "75 px, CPU"
    # Spread of the generated images against the real ones' (trainer/evaluate.py): near 0 when G collapsed to a mode.
    diversity: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    scoring: Positive | None = None
    best_by: Literal[BEST_BY] | None = None  # the best pair is in `checkpoints`: chosen by this score of this epoch


class ScoreMessage(_Files, _Message):
    """FID and KID of an earlier epoch, computed off the training thread; the best pair when its KID chose it."""

    type: Literal["score"] = "score"
    epoch: Positive
    step: Count
    fid: Finite | None = None
    kid: Finite | None = None
    fid_at: Annotated[str, Field(max_length=64)] | None = None
    best_by: Literal[BEST_BY] | None = None


class StatusMessage(_Files, _Message):
    """`running` once at the start of an attempt; then one of the ends. A stop inside an epoch names its snapshot in
    `checkpoints`, since no epoch message does."""

    type: Literal["status"] = "status"
    status: Literal[Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.CANCELLED]
    step: Count | None = None
    epoch: Count | None = None
    total_steps: Count | None = None
    total_epochs: Count | None = None
    batches_per_epoch: Count | None = None
    device: Annotated[str, Field(max_length=64)] | None = None
    bf16: bool | None = None
    graphed: bool | None = None  # the step runs as CUDA graphs (trainer/steps.py); false: eagerly
    error: Annotated[str, Field(max_length=10_000)] | None = None
    traceback: Annotated[str, Field(max_length=10_000)] | None = None
    resumable: bool | None = None  # failed: false when resuming would fail the same way (its data cannot load)

    @model_validator(mode="after")
    def _complete(self) -> StatusMessage:
        need = {
            Status.RUNNING: ("step", "epoch", "total_steps", "total_epochs", "device"),
            Status.FAILED: ("error",),
        }.get(self.status, ("step", "epoch"))
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.status} status needs {', '.join(missing)}")
        return self


NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SystemMessage(_Message):
    """The worker's machine every few seconds (trainer/system.py): its process's CPU % (100 = one core) and resident
    memory, and the GPU it trains on when there is one and NVML can read it (else null)."""

    type: Literal["system"] = "system"
    time: NonNegative  # unix seconds
    step: Count  # the newest step the worker had reported
    cpu_percent: NonNegative
    rss_mb: NonNegative
    gpu_util: NonNegative | None = None  # percent of the sample period a kernel ran
    gpu_mem_mb: NonNegative | None = None  # used on the whole GPU, by every process
    gpu_temp_c: NonNegative | None = None


# What a system sample holds, as the database stores it (db.SystemSample's columns follow it) and the API sends it.
SYSTEM_FIELDS: tuple[str, ...] = tuple(
    name for name in SystemMessage.model_fields if name not in (*_Message.model_fields, "type")
)


class StoppingMessage(_Message):
    """The worker heard the stop signal at `step`: it saves and reports `cancelled` next. The cancel's grace counts
    from here, not from the signal."""

    type: Literal["stopping"] = "stopping"
    step: Count


WorkerMessage = Annotated[
    BatchMessage | EpochMessage | ScoreMessage | StatusMessage | StoppingMessage | SystemMessage,
    Field(discriminator="type"),
]
_WORKER_MESSAGE: TypeAdapter[WorkerMessage] = TypeAdapter(WorkerMessage)


def parse_message(text: str | bytes) -> WorkerMessage:
    """One worker message from its JSON text; raises pydantic.ValidationError naming the field and the reason."""
    return _WORKER_MESSAGE.validate_json(text)


class Ack(BaseModel):
    """Server -> worker, after the message is committed (or was stored before)."""

    type: Literal["ack"] = "ack"
    seq: Positive
    # A CPU worker's share of the cores now, as torch threads: it changes as CPU runs start and end (app/runs/supervisor.py).
    threads: Positive | None = None
