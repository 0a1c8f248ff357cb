"""The JSON API: runs (create, list and filter, get, edit, cancel, resume, delete), their metrics, sample grids,
checkpoints and machine samples, and the server's machine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from sqlalchemy import delete, select

from app import gpus
from app.runs.executors.slurm import SlurmResources
from app.runs.memory import memory_error
from app.storage import history, json_view
from app.storage.db import Checkpoint, Run, Sample
from app.storage.json_view import RunOut, download_name
from app.storage.lifecycle import TransitionError
from app.storage.paths import PATH_FIELDS, path_error, resolved
from app.storage.runfiles import NotInRun, RunFileResponse, note, open_in_run
from app.web.deps import RunId, SessionDep, body_error, run_or_404
from trainer.config import PRESETS, RESUME_CHANGES, TrainConfig, data_error, form_fields
from trainer.protocol import ACTIVE, BEST, WORKER_LOG, Status
from trainer.system import host_gpus

router = APIRouter(prefix="/api", tags=["runs"])
# What is not about one run, under its own tags only (a route's tags add to its router's: on `router` they were listed
# twice in /docs, under "runs" too).
about = APIRouter(prefix="/api")


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # `{"confg": ...}` is a typo, not a request for the default run

    name: str | None = Field(None, max_length=100, description="defaults to the dataset and run id")
    config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields; missing ones take defaults")
    executor: Literal["local", "slurm"] | None = Field(None, description="where it trains (default: GANBOARD_EXECUTOR); "
                                                       "slurm only on a server set up for it (docs/cluster.md)")
    slurm: SlurmResources | None = Field(None, description="its Slurm job, on the slurm executor; what it leaves out "
                                         "takes the server's setting (GANBOARD_SLURM_*)")


Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[^,]*$")]


class RunEdit(BaseModel):
    """What people may change about a run; only the fields sent change. Never its status: that is the supervisor's."""

    model_config = ConfigDict(extra="forbid")

    # No `| None` on name, tags and archived: an explicit null is a 422, not a silent no-op.
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = None
    tags: list[Tag] = Field(None, max_length=20, description="at most 20, each 1..32 characters without commas")
    note: str | None = Field(None, max_length=10_000, description="free text; null or empty clears it")
    archived: bool = Field(None, description="hide the run from the run list's default view")

    @field_validator("tags")
    @classmethod
    def _once_each(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class FileOut(BaseModel):
    name: str
    url: str
    epoch: int
    size: int | None = None


class SampleGridOut(FileOut):
    """One epoch's sample grid in samples/, with the scores of that epoch."""

    swd: float | None = Field(None, description="sliced Wasserstein distance x1e3 to the data (lower: better)")
    fid: float | None = Field(None, description="FID, when that epoch was scored (docs/quality.md)")
    kid: float | None = Field(None, description="KID, when that epoch was scored")


class CheckpointOut(FileOut):
    label: str = Field(description='what it holds, e.g. "after epoch 10", "in epoch 29, step 812"')
    step: int | None = Field(None, description="the step it was saved after")
    sha256: str | None = Field(None, description="SHA-256 of the file as the worker reported it")


@about.get("/form", tags=["form"])
def form(request: Request) -> dict[str, Any]:
    """What the new-run form needs: every TrainConfig field with its group and help, the presets, the devices; on a
    server with Slurm, a job's resources as the settings give them (the form starts from them)."""
    settings = request.app.state.settings
    info = {
        "fields": form_fields(),
        "presets": {name: TrainConfig.preset(name).model_dump() for name in PRESETS},
        "devices": ["auto", "cpu", *(f"cuda:{i}" for i in gpus.visible())],
        "executors": _executors(settings),
    }
    if settings.executor == "slurm":
        info["slurm"] = SlurmResources.of(settings).model_dump()
    return info


def _executors(settings) -> list[str]:
    """Where a run may train, the default first: a server with Slurm offers the cluster and itself."""
    return ["slurm", "local"] if settings.executor == "slurm" else ["local"]


def _check_paths(cfg: TrainConfig, roots: list[Path]) -> None:
    """A path the user typed may only point into the configured data roots (or the runs dir)."""
    for field in PATH_FIELDS:
        if (value := getattr(cfg, field)) and (error := path_error(value, roots)):
            raise body_error(("config", field), error)


# A null for a field that takes no null: what an emptied form field sends. "required" says it; pydantic said "Input
# should be a valid integer".
_NULL_REFUSED = {"int_type", "float_type", "bool_type", "string_type", "literal_error"}


def _config_errors(e: ValidationError) -> list[dict]:
    out = []
    for err in e.errors(include_url=False, include_context=False):
        field = err["loc"][0] if len(err["loc"]) == 1 else None
        if err.get("input", "") is None and err["type"] in _NULL_REFUSED and field in TrainConfig.model_fields:
            default = TrainConfig.model_fields[field].default
            err = {**err, "type": "missing", "msg": f"required (the default is {default})"}
        out.append({**err, "loc": ("body", "config", *err["loc"])})
    return out


@router.post("/runs", status_code=201, response_model=RunOut)
def create_run(body: RunCreate, request: Request, session: SessionDep) -> dict:
    try:
        cfg = TrainConfig(**body.config)
    except ValidationError as e:
        raise RequestValidationError(_config_errors(e)) from None
    _check_paths(cfg, request.app.state.settings.data_roots)
    executor = body.executor or request.app.state.settings.executor
    if executor not in _executors(request.app.state.settings):
        raise body_error(("executor",), f"this server has no {executor} executor (GANBOARD_EXECUTOR)")
    if executor == "local":  # a cluster's node is not this machine
        try:
            gpus.place(cfg.device, busy=[], count=cfg.gpus)
        except gpus.PlacementError as e:
            raise body_error(("config", "device"), str(e)) from None
        if too_big := memory_error(cfg):
            raise body_error(("config", too_big[0]), too_big[1])
    if no_data := data_error(cfg):  # now, not from the worker after its wait in the queue
        raise body_error(("config", no_data[0]), no_data[1])
    config = resolved(cfg.model_dump())  # what was checked is what the worker gets, whatever a symlink points to later
    slurm = None
    if executor == "slurm":  # the server's settings, and what the run says over them
        defaults = SlurmResources.of(request.app.state.settings)
        slurm = defaults.model_copy(update=body.slurm.model_dump(exclude_unset=True) if body.slurm else {}).model_dump()
    elif body.slurm is not None:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "slurm"),
                                       "msg": "a Slurm job's resources are for a run on the slurm executor"}])  # fmt: skip
    run = Run(name=(body.name or "").strip() or f"{cfg.dataset}", config=config, executor=executor, slurm=slurm)
    session.add(run)
    session.flush()
    if not body.name or not body.name.strip():
        run.name = f"{cfg.dataset}-{run.id}"
    request.app.state.supervisor.submit(session, run)
    return json_view.run_json(run)


@router.get("/runs", response_model=list[RunOut])
def list_runs(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="in the name, a tag or the note (any case)")] = None,
    status: Annotated[Status | None, Query()] = None,
    tag: Annotated[str | None, Query(max_length=32, description="runs with this tag")] = None,
    archived: Annotated[bool | None, Query(description="true: only archived runs; false: only the others; unset: all")] = None,
) -> list[dict]:
    """Newest first. The pages filter on their own (the list is small); these are for scripts."""
    query = select(Run).order_by(Run.id.desc())
    if status is not None:
        query = query.where(Run.status == status)
    if archived is not None:
        query = query.where(Run.archived == archived)
    runs = session.scalars(query)
    if tag:  # tags are a JSON list: matched here rather than in SQL
        runs = (r for r in runs if tag in (r.tags or []))
    if q and (needle := q.strip().lower()):
        runs = (r for r in runs if needle in " ".join([r.name, *(r.tags or []), r.note or ""]).lower())
    return [json_view.run_json(r) for r in runs]


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: RunId, session: SessionDep) -> dict:
    return json_view.run_json(run_or_404(session, run_id))


@router.patch("/runs/{run_id}", response_model=RunOut)
def edit_run(run_id: RunId, body: RunEdit, session: SessionDep) -> dict:
    """Rename, tag, annotate, archive or unarchive; any status, even while it runs."""
    run = run_or_404(session, run_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(run, field, (value or None) if field == "note" else value)
    session.commit()
    return json_view.run_json(run)


def _act(action: Callable[[int], Run], run_id: int) -> dict:
    """A lifecycle action of the supervisor, the one owner of a run's status: 404 or 409 with the reason."""
    try:
        return json_view.run_json(action(run_id))
    except LookupError as e:
        raise HTTPException(404, str(e)) from None
    except TransitionError as e:
        raise HTTPException(409, str(e)) from None


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RunId, request: Request) -> dict:
    """Queued: cancelled at once. Running: the worker is asked to stop (it saves a checkpoint), then `cancelled`."""
    return _act(request.app.state.supervisor.cancel, run_id)


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(
        default_factory=dict, description=f"settings to carry on with, of {', '.join(RESUME_CHANGES)}; the rest stay"
    )


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(ge=1, le=100_000, description="how many more epochs to train")


def _checked_changes(run: Run, changes: dict[str, Any]) -> dict[str, Any]:
    """Changes to a stopped run's config, each one a run may make when it carries on (422 naming the field if not)."""
    for field in changes:
        if field not in RESUME_CHANGES:
            raise body_error(("config", field), f"cannot change when resuming: the checkpoint depends on it (these can: "
                                       f"{', '.join(RESUME_CHANGES)})")  # fmt: skip
    try:
        cfg = TrainConfig(**{**run.config, **changes})
    except ValidationError as e:
        raise RequestValidationError(_config_errors(e)) from None
    if cfg.epochs <= run.epoch:
        raise body_error(("config", "epochs"), f"{run.epoch} epochs are done already: give more than that")
    return {field: getattr(cfg, field) for field in changes}


@router.post("/runs/{run_id}/resume", response_model=RunOut)
def resume_run(
    run_id: RunId, request: Request, session: SessionDep, body: Annotated[ResumeBody | None, Body()] = None
) -> dict:
    """Queue a failed, cancelled or interrupted run again, to continue from its last checkpoint; with `config`, on
    changed settings (learning rates, epochs, the save and eval schedule), recorded in the run's `changes`."""
    changes = _checked_changes(run_or_404(session, run_id), body.config) if body and body.config else None
    return _act(lambda i: request.app.state.supervisor.resume(i, changes), run_id)


@router.post("/runs/{run_id}/extend", response_model=RunOut)
def extend_run(run_id: RunId, body: ExtendBody, request: Request) -> dict:
    """Train a completed run `epochs` more epochs from its resume.pt: the same run, its charts carrying on; the new
    number of epochs is recorded in its `changes`."""
    return _act(lambda i: request.app.state.supervisor.extend(i, body.epochs), run_id)


@router.delete("/runs/{run_id}", status_code=204)
def delete_run(run_id: RunId, request: Request, session: SessionDep) -> Response:
    """Any run but a running one (409: cancel it first). A queued one is cancelled and deleted in one step: no worker
    runs it, there is nothing to stop."""
    run = run_or_404(session, run_id)
    if run.status == Status.QUEUED:
        _act(request.app.state.supervisor.cancel, run_id)  # through the supervisor: the tick may be starting it now
    # Only while it is not active, checked by the DELETE itself: a resume in between keeps the run.
    if session.execute(delete(Run).where(Run.id == run_id, Run.status.not_in(ACTIVE))).rowcount != 1:
        session.refresh(run)
        raise HTTPException(409, f"run {run_id} is {run.status}: cancel it before deleting it")
    session.commit()
    shutil.rmtree(request.app.state.settings.runs_dir / str(run_id), ignore_errors=True)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics")
def get_metrics(
    run_id: RunId,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="only steps after this one")] = 0,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="only steps before this one")] = None,
    max_points: Annotated[int, Query(ge=10, le=1_000_000, description="downsample to at most this many rows")] = 2000,
) -> dict[str, list]:
    """Per-batch metrics, columnar, the steps after `after` and before `before` (a zoomed chart reads its range at full
    resolution). Downsampled by keeping each series' min and max per bucket, so spikes survive."""
    if before is not None and before <= after:
        raise HTTPException(422, f"before ({before}) must be greater than after ({after})")
    run_or_404(session, run_id)
    return history.metrics(session, run_id, after, max_points, before)


@router.get("/runs/{run_id}/samples", response_model=list[SampleGridOut])
def list_samples(run_id: RunId, session: SessionDep) -> list[dict]:
    run_or_404(session, run_id)
    return json_view.samples_json(session, run_id)


@router.get("/runs/{run_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(run_id: RunId, session: SessionDep) -> list[dict]:
    run_or_404(session, run_id)
    return json_view.checkpoints_json(session, run_id)


@router.get("/runs/{run_id}/system")
def get_system(
    run_id: RunId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1_000_000, description="the newest this many samples")] = json_view.SYSTEM_RECENT,
) -> list[dict]:
    """The worker's machine every few seconds, oldest first: the attempt, time (unix s), step, cpu_percent (100 = one core), rss_mb,
    and gpu_util (%), gpu_mem_mb, gpu_temp_c on a GPU (else null)."""
    run_or_404(session, run_id)
    return json_view.recent_system(session, run_id, limit)


@about.get("/machine", tags=["machine"])
def machine(request: Request, session: SessionDep) -> dict[str, Any]:
    """This server's machine: each GPU (NVML) with its memory and the runs training on it, the CPU, and the running
    runs. A run's GPU is the one the supervisor gave its worker (a run's `device` is always cuda:0 in its worker)."""
    running = session.scalars(select(Run).where(Run.status == Status.RUNNING).order_by(Run.id)).all()
    gpu_of = {run_id: worker.gpu for run_id, worker in request.app.state.supervisor.workers.items()}
    gpus = [
        {**gpu, "runs": [{"id": r.id, "name": r.name} for r in running if gpu_of.get(r.id) == str(gpu["index"])]}
        for gpu in host_gpus()
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "gpus": gpus,
        "cpu": {"count": os.cpu_count(), "load": load},
        "running": [{"id": r.id, "name": r.name, "device": r.device} for r in running],
    }


def _registered_file(request: Request, run_id: int, folder: str, name: str, known: bool) -> BinaryIO:
    """Only names the database holds are served, so `..`, slashes or absolute paths can never reach the disk; and only
    as a regular file inside the run's folder, opened without following links (app/storage/runfiles.py)."""
    if known:
        try:
            return open_in_run(request.app.state.settings.runs_dir / str(run_id), folder, name)
        except NotInRun as e:
            note(request.app.state.settings.runs_dir / str(run_id), f"not served: {e.strerror}")
        except OSError:
            pass
    raise HTTPException(404, f"{folder[:-1]} {name!r} not found in run {run_id}")


@router.api_route("/runs/{run_id}/samples/{name}", methods=["GET", "HEAD"], response_class=FileResponse)
def get_sample(run_id: RunId, name: str, request: Request, session: SessionDep):
    known = session.scalars(select(Sample).where(Sample.run_id == run_id, Sample.name == name)).first() is not None
    return RunFileResponse(_registered_file(request, run_id, "samples", name, known), media_type="image/png")


@router.api_route("/runs/{run_id}/checkpoints/best", methods=["GET", "HEAD"], response_class=FileResponse)
def get_best_checkpoint(
    run_id: RunId, request: Request, session: SessionDep,
    net: Annotated[Literal["g", "d"], Query(description="g: the generator (netg_best.pth), d: the discriminator")] = "g",
):  # fmt: skip
    """G (or D) at the epoch with the best score so far: KID once three epochs have one, SWD before (its label says)."""
    run = run_or_404(session, run_id)
    name = BEST[net == "d"]
    if session.get(Checkpoint, {"run_id": run_id, "name": name}) is None:
        raise HTTPException(404, f"run {run_id} has no best checkpoint yet: no epoch has been scored yet")
    file = _registered_file(request, run_id, "checkpoints", name, True)
    return RunFileResponse(file, media_type="application/octet-stream", filename=download_name(run.name, name))


@router.api_route("/runs/{run_id}/checkpoints/{name}", methods=["GET", "HEAD"], response_class=FileResponse)
def get_checkpoint(run_id: RunId, name: str, request: Request, session: SessionDep):
    run = run_or_404(session, run_id)
    known = session.get(Checkpoint, {"run_id": run_id, "name": name}) is not None
    file = _registered_file(request, run_id, "checkpoints", name, known)
    return RunFileResponse(file, media_type="application/octet-stream", filename=download_name(run.name, name))


LOG_TAIL_BYTES = 64 * 1024  # what the Logs tab shows at first; the whole file is a download


class LogOut(BaseModel):
    text: str = Field(description="the log from byte `start` to byte `end`, decoded as UTF-8 (bad bytes replaced)")
    start: int
    end: int = Field(description="the log's size when read: ask for `after=end` next to get what came since")


@router.get("/runs/{run_id}/log", response_model=LogOut)
def get_log(
    run_id: RunId,
    request: Request,
    session: SessionDep,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="from this byte on; unset: the last 64 KiB")] = None,
) -> dict:
    """The worker's log (every attempt, appended), read by the run page's Logs tab while the run trains."""
    run_or_404(session, run_id)
    path = request.app.state.settings.runs_dir / str(run_id) / WORKER_LOG
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            start = max(0, end - LOG_TAIL_BYTES) if after is None or after > end else after  # a shorter log: a new file
            f.seek(start)
            data = f.read(min(end - start, LOG_TAIL_BYTES))
    except FileNotFoundError:
        return {"text": "", "start": 0, "end": 0}
    return {"text": data.decode("utf-8", "replace"), "start": start, "end": start + len(data)}


@router.api_route("/runs/{run_id}/log/worker.log", methods=["GET", "HEAD"], response_class=PlainTextResponse)
def download_log(run_id: RunId, request: Request, session: SessionDep):
    """The whole worker log, as a file."""
    run = run_or_404(session, run_id)
    path = request.app.state.settings.runs_dir / str(run_id) / WORKER_LOG
    if not path.is_file():
        raise HTTPException(404, f"run {run_id} has no worker log yet: it has not started")
    return FileResponse(path, media_type="text/plain; charset=utf-8", filename=download_name(run.name, WORKER_LOG))
