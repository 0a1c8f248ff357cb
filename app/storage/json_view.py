"""The run's JSON view, read only: a run, its samples, checkpoints, alerts and machine samples as the API and the pages
send them (the metric history: app/storage/history.py). Worker messages are stored by app.storage.ingest, never here.

Every function here is synchronous and takes a Session; async callers run them in a thread.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.storage import history
from app.storage.db import Alert, Checkpoint, Run, Sample, SystemSample, sample_url
from trainer.protocol import SYSTEM_FIELDS, Status, checkpoint_label


def _utc(t: datetime) -> str:
    """Times are stored as naive UTC; the JSON says so with a Z, which a browser's Date() needs."""
    return (t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t).isoformat() + "Z"


UtcTime = Annotated[datetime, PlainSerializer(_utc, return_type=str)]


def download_name(run_name: str, suffix: str) -> str:
    """The file name of any download of a run, in one style: `<run name>-<what>`, anything but letters, digits, `-`,
    `_` and `.` as `_` (`emoji 1` -> `emoji_1-netg.pth`)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{run_name}-{suffix}")


class AlertOut(BaseModel):
    """A health alert (app/storage/health.py): what is wrong in words, and what to try."""

    model_config = ConfigDict(from_attributes=True)

    kind: str
    step: int
    epoch: int
    message: str
    advice: str
    cleared_step: int | None = Field(description="the step where its rule stopped holding; null while open")


def alert_json(alert: Alert) -> dict[str, Any]:
    return AlertOut.model_validate(alert).model_dump(mode="json")


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
    epoch: int = Field(description="epochs completed")
    epoch_in_progress: int | None = Field(
        description="the epoch its newest step lies in, when past the completed ones: while it trains, or where it stopped"
    )
    total_steps: int | None
    total_epochs: int | None
    images_per_s: float | None = Field(description="over the last ~20 s of training; null unless running and measured")
    attempt_images_per_s: float | None = Field(description="over this attempt's training so far")
    eta_seconds: float | None = Field(description="the steps left at `attempt_images_per_s`; null unless running")
    mean_images_per_s: float | None = Field(description="images trained over `active_seconds`; null before a step")
    active_seconds: float = Field(description="time spent running, summed over attempts")
    loss_d: float | None
    loss_g: float | None
    d_x: float | None
    d_g_z: float | None
    swd: float | None = Field(description="sliced Wasserstein distance x1e3 of the latest epoch's samples (lower: better)")
    best_swd: float | None
    fid: float | None = Field(description="the latest FID (at the resolution docs/quality.md gives)")
    best_fid: float | None
    fid_at: str | None = Field(description='what the latest FID was computed at, e.g. "75 px, CPU"')
    scoring: int | None = Field(description="the epoch whose FID/KID the worker is computing now, while training goes on")
    best_by: str | None = Field(description='the score that chose the best checkpoint: "kid", or "swd" before three KIDs')
    latest_sample: str | None = Field(validation_alias=AliasChoices("latest_sample_url", "latest_sample"), description="URL")
    error: str | None
    attempt: int = Field(description="how many times a worker was started for it")
    resumable: bool = Field(description="Resume would start it again; false while it is active or when its data cannot load")
    pid: int | None
    executor: str | None = Field(description="where it trains: local or slurm (null: local, from before executors)")
    job_id: str | None = Field(description="its worker's id in that executor: a pid, a Slurm job id")
    job_state: str | None = Field(description='what the executor says of it, e.g. "pending: Resources"')
    slurm: dict[str, Any] | None = Field(description="a Slurm run's job: partition, time, cpus, mem, gpus, options, "
                                         "requeue (docs/cluster.md)")
    requeued: int = Field(description="times it was requeued by itself after Slurm's time limit or a preemption")
    exit_code: int | None
    device: str | None = Field(description="what the worker trains on, as it reported")
    bf16: bool | None = Field(description="whether the worker trains with bfloat16 autocast, as it reported")
    graphed: bool | None = Field(description="whether the worker's step runs as CUDA graphs (false: eagerly), as it reported")
    tags: Annotated[list[str], BeforeValidator(lambda v: v or [])] = Field(description="short labels people gave the run")
    note: str | None = Field(description="free text people wrote about the run")
    archived: bool = Field(description="hidden from the run list's default view")
    sweep_id: int | None = Field(None, description="the sweep that made it (/api/sweeps/{id}), or null")
    restarts: Annotated[list[dict], BeforeValidator(lambda v: v or [])] = Field(
        description='where each attempt after the first began training: {"attempt", "step"} (a resume, a restart)'
    )
    stops: Annotated[list[dict], BeforeValidator(lambda v: v or [])] = Field(
        description='where each attempt that trained ended, and how: {"attempt", "step", "status"}'
    )
    changes: Annotated[list[dict], BeforeValidator(lambda v: v or [])] = Field(
        description='settings changed when it was resumed or extended: {"at", "step", "epoch", "changed": {key: [old, new]}}'
    )
    alerts: list[AlertOut] = Field(validation_alias=AliasChoices("alerts_newest_first", "alerts"), description="newest first")
    replaying: bool = Field(False, description="its journal is being replayed after a restart: its history and status "
                            "are catching up with what its worker wrote while the server was down")


replaying: set[int] = set()  # runs whose journal the start-up replay has not stored to its end yet (app/storage/journal.py)


def run_json(run: Run) -> dict[str, Any]:
    return {**RunOut.model_validate(run).model_dump(mode="json"), "replaying": run.id in replaying}


def samples_json(session: Session, run_id: int, epoch: int | None = None) -> list[dict]:
    """The run's samples (one epoch's, given `epoch`), with their scores."""
    where = [Sample.run_id == run_id] + ([Sample.epoch == epoch] if epoch is not None else [])
    rows = session.scalars(select(Sample).where(*where).order_by(Sample.epoch))
    return [
        {"epoch": s.epoch, "name": s.name, "size": s.size, "url": sample_url(run_id, s.name), "swd": s.swd, "fid": s.fid,
         "kid": s.kid, "diversity": s.diversity}
        for s in rows
    ]  # fmt: skip


def checkpoints_json(session: Session, run_id: int) -> list[dict]:
    rows = session.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.name))
    # What chose the best checkpoint; a run from before KID/SWD chose it had it chosen by FID.
    by = session.scalar(select(Run.best_by).where(Run.id == run_id)) or "fid"
    scored = select(Sample.epoch, getattr(Sample, by)).where(Sample.run_id == run_id)
    scores = dict(session.execute(scored).all())  # epoch -> that score, for the best checkpoint's label
    return [
        {"name": c.name, "label": checkpoint_label(c.name, epoch=c.epoch, by=by, score=scores.get(c.epoch)),
         "size": c.size,
         "epoch": c.epoch, "step": c.step, "sha256": c.sha256, "url": f"/api/runs/{run_id}/checkpoints/{c.name}"}
        for c in rows
    ]  # fmt: skip


SYSTEM_RECENT = 2000  # machine samples a run page starts with: ~2.8 hours at one every 5 s


def system_json(sample: SystemSample) -> dict[str, Any]:
    return {"attempt": sample.attempt, **{name: getattr(sample, name) for name in SYSTEM_FIELDS}}


def recent_system(session: Session, run_id: int, limit: int = SYSTEM_RECENT) -> list[dict]:
    """The run's newest `limit` machine samples, oldest first."""
    rows = session.scalars(
        select(SystemSample).where(SystemSample.run_id == run_id).order_by(SystemSample.time.desc()).limit(limit)
    ).all()
    return [system_json(s) for s in reversed(rows)]


def snapshot(session: Session, run: Run, after: int = 0) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "run": run_json(run),
        "metrics": history.buckets(session, run, after),
        "samples": samples_json(session, run.id),
        "checkpoints": checkpoints_json(session, run.id),
        "system": recent_system(session, run.id),
    }
