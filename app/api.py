"""The JSON API: runs (create, list, get, cancel, resume, delete), their metrics, sample grids and checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import history, store
from app.db import Checkpoint, Run, Sample
from app.settings import visible_gpus
from trainer.config import PRESETS, TrainConfig, form_fields

router = APIRouter(prefix="/api", tags=["runs"])


def get_session(request: Request):
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RunId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the run's id")]  # SQLite integers are 64-bit


class RunCreate(BaseModel):
    name: str | None = Field(None, max_length=100, description="defaults to the dataset and run id")
    config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields; missing ones take defaults")


class RunOut(BaseModel):
    id: int
    name: str
    status: str
    config: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    step: int
    epoch: int
    total_steps: int | None
    total_epochs: int | None
    images_per_s: float | None
    loss_d: float | None
    loss_g: float | None
    d_x: float | None
    d_g_z: float | None
    latest_sample: str | None
    error: str | None
    pid: int | None
    exit_code: int | None
    device: str | None


class FileOut(BaseModel):
    name: str
    url: str
    epoch: int
    size: int | None = None
    sha256: str | None = Field(None, description="checkpoints: SHA-256 of the file as the worker reported it")


def _run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found")
    return run


@router.get("/form", tags=["form"])
def form() -> dict[str, Any]:
    """What the new-run form needs: every TrainConfig field with its group and help, the presets, the devices."""
    return {
        "fields": form_fields(),
        "presets": {name: TrainConfig.preset(name).model_dump() for name in PRESETS},
        "devices": ["auto", "cpu", *(f"cuda:{i}" for i in visible_gpus())],
    }


def _config_error(field: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", "config", field), "msg": msg}])


def _check_paths(cfg: TrainConfig, roots: list[Path]) -> None:
    """A path the user typed may only point into the configured data roots (or the runs dir)."""
    for field in ("data_path", "netg_init", "netd_init"):
        value = getattr(cfg, field)
        if value and not any(Path(value).expanduser().resolve().is_relative_to(root) for root in roots):
            allowed = ", ".join(map(str, roots))
            raise _config_error(field, f"{value!r} is outside the data roots ({allowed}); GANBOARD_DATA_ROOTS sets them")


@router.post("/runs", status_code=201, response_model=RunOut)
def create_run(body: RunCreate, request: Request, session: SessionDep) -> dict:
    try:
        cfg = TrainConfig(**body.config)
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", "config", *err["loc"])} for err in e.errors(include_url=False, include_context=False)]
        ) from None
    _check_paths(cfg, request.app.state.settings.data_roots)
    run = Run(name=(body.name or "").strip() or f"{cfg.dataset}", status="queued", config=cfg.model_dump())
    session.add(run)
    session.flush()
    if not body.name or not body.name.strip():
        run.name = f"{cfg.dataset}-{run.id}"
    session.commit()
    request.app.state.supervisor.poke()
    return store.run_json(run)


@router.get("/runs", response_model=list[RunOut])
def list_runs(session: SessionDep) -> list[dict]:
    return [store.run_json(r) for r in session.scalars(select(Run).order_by(Run.id.desc()))]


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: RunId, session: SessionDep) -> dict:
    return store.run_json(_run(session, run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RunId, request: Request, session: SessionDep) -> dict:
    run = _run(session, run_id)
    if run.status not in store.ACTIVE:
        raise HTTPException(409, f"run {run_id} is {run.status}: only a queued or running run can be cancelled")
    request.app.state.supervisor.cancel(run)
    session.commit()
    return store.run_json(run)


@router.post("/runs/{run_id}/resume", response_model=RunOut)
def resume_run(run_id: RunId, request: Request, session: SessionDep) -> dict:
    run = _run(session, run_id)
    if run.status not in store.RESUMABLE:
        raise HTTPException(409, f"run {run_id} is {run.status}: only a failed, cancelled or interrupted run resumes")
    has_checkpoint = (request.app.state.settings.runs_dir / str(run_id) / "checkpoints" / "resume.pt").is_file()
    run.status, run.resume, run.error, run.finished_at = "queued", has_checkpoint, None, None
    session.commit()
    request.app.state.supervisor.poke()
    return store.run_json(run)


@router.delete("/runs/{run_id}", status_code=204)
def delete_run(run_id: RunId, request: Request, session: SessionDep) -> Response:
    run = _run(session, run_id)
    if run.status in store.ACTIVE:
        raise HTTPException(409, f"run {run_id} is {run.status}: cancel it before deleting it")
    session.delete(run)
    session.commit()
    shutil.rmtree(request.app.state.settings.runs_dir / str(run_id), ignore_errors=True)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics")
def get_metrics(
    run_id: RunId,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, description="only steps after this one")] = 0,
    max_points: Annotated[int, Query(ge=10, le=1_000_000, description="downsample to at most this many rows")] = 2000,
) -> dict[str, list]:
    """Per-batch metrics, columnar. Downsampled by keeping each series' min and max per bucket, so spikes survive."""
    _run(session, run_id)
    return history.metrics(session, run_id, after, max_points)


@router.get("/runs/{run_id}/samples", response_model=list[FileOut])
def list_samples(run_id: RunId, session: SessionDep) -> list[dict]:
    _run(session, run_id)
    return store.samples_json(session, run_id)


@router.get("/runs/{run_id}/checkpoints", response_model=list[FileOut])
def list_checkpoints(run_id: RunId, session: SessionDep) -> list[dict]:
    _run(session, run_id)
    return store.checkpoints_json(session, run_id)


def _registered_file(request: Request, run_id: int, folder: str, name: str, known: bool):
    """Only names the database holds are served, so `..`, slashes or absolute paths can never reach the disk."""
    path = request.app.state.settings.runs_dir / str(run_id) / folder / name
    if not known or not path.is_file():
        raise HTTPException(404, f"{folder[:-1]} {name!r} not found in run {run_id}")
    return path


@router.get("/runs/{run_id}/samples/{name}", response_class=FileResponse)
def get_sample(run_id: RunId, name: str, request: Request, session: SessionDep):
    known = session.scalars(select(Sample).where(Sample.run_id == run_id, Sample.name == name)).first() is not None
    return FileResponse(_registered_file(request, run_id, "samples", name, known), media_type="image/png")


@router.get("/runs/{run_id}/checkpoints/{name}", response_class=FileResponse)
def get_checkpoint(run_id: RunId, name: str, request: Request, session: SessionDep):
    run = _run(session, run_id)
    known = session.get(Checkpoint, {"run_id": run_id, "name": name}) is not None
    path = _registered_file(request, run_id, "checkpoints", name, known)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{run.name}-{name}")
