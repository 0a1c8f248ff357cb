"""Sweeps over HTTP: plan, create, list, get, cancel, resume and delete a whole sweep (`/api/sweeps`), and its page.

A grid or random sweep stores all its runs at once, queued in order through the supervisor like any run; an Optuna
sweep's runs are made by app/runs/study.py as its trials are asked. A sweep's runs are ordinary runs with `sweep_id` set.
"""

from __future__ import annotations

import shutil
import statistics
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.runs.memory import memory_error
from app.runs.supervisor import TransitionError
from app.runs.sweeps import SweepError, SweepSpec, check_optuna, loc_of, run_config, run_count, settings_list, settings_of
from app.storage.db import Run, Sample, Sweep
from app.storage.json_view import UtcTime
from app.storage.paths import PATH_FIELDS, path_error, resolved
from app.web.deps import SessionDep, SweepId, body_error
from app.web.pages import module_graph, templates
from trainer.config import TrainConfig
from trainer.memory import estimate
from trainer.protocol import ACTIVE, Status

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])
pages = APIRouter(include_in_schema=False)
SWEEP_MODULES = module_graph("/static/sweep/main.js")


def _configs(spec: SweepSpec, request: Request) -> list[TrainConfig]:
    """Every run's config, checked as POST /api/runs checks one (an Optuna sweep: each axis's values or ends, and one
    config for the memory and time estimates)."""
    try:
        configs = [check_optuna(spec)] if spec.method == "optuna" else [run_config(spec, s) for s in settings_list(spec)]
    except SweepError as e:
        raise body_error(e.loc, e.msg) from None
    roots = request.app.state.settings.data_roots
    for cfg in configs:  # a path may only point into the data roots, as for one run; an axis may vary data_path too
        for field in PATH_FIELDS:
            if (value := getattr(cfg, field)) and (error := path_error(value, roots)):
                raise body_error(loc_of(spec, field), error)
    biggest = max(configs, key=lambda c: estimate(c).total)
    if too_big := memory_error(biggest):
        raise body_error(loc_of(spec, too_big[0]), too_big[1])
    return configs


def _seconds(session: Session, configs: list[TrainConfig]) -> tuple[float | None, int]:
    """About how long these configs train one after another on this machine, from the runs that completed here with
    the same data and model (their images/s) and the same data and batch size (their steps per epoch); None when a
    config has nothing like it measured. Also the number of runs measured."""
    done = session.scalars(select(Run).where(Run.status == Status.COMPLETED, Run.total_steps.is_not(None))).all()
    speeds: dict[tuple, list[float]] = {}
    steps: dict[tuple, int] = {}
    for run in done:
        c = run.config
        if run.active_seconds > 0 and run.step:
            speeds.setdefault(_model_key(c), []).append(run.step * c["batch_size"] / run.active_seconds)
        if run.total_epochs and c.get("max_steps") is None:
            steps[_data_key(c)] = run.total_steps // run.total_epochs
    total = 0.0
    for cfg in configs:
        c = cfg.model_dump()
        per_epoch = steps.get(_data_key(c))
        speed = speeds.get(_model_key(c))
        if per_epoch is None or not speed:
            return None, len(done)
        run_steps = min(per_epoch * cfg.epochs, cfg.max_steps or per_epoch * cfg.epochs)
        total += run_steps * cfg.batch_size / statistics.median(speed)
    return total, len(done)


def _data_key(c: dict) -> tuple:
    return c["dataset"], c.get("data_path"), c["image_size"], c["batch_size"]


def _model_key(c: dict) -> tuple:
    return c["dataset"], c["image_size"], c["ngf"], c["ndf"], c["nz"], c["channels"], c["device"]


class PlanOut(BaseModel):
    count: int
    settings: list[dict[str, Any]]
    seconds: float | None
    measured_runs: int


@router.post("/plan", response_model=PlanOut)
def plan(spec: SweepSpec, request: Request, session: SessionDep) -> dict:
    """What POST /api/sweeps would make, without making it: the number of runs, their settings (grid and random) and
    roughly how long they take one after another here (null until runs like them completed on this server)."""
    configs = _configs(spec, request)
    settings = [] if spec.method == "optuna" else settings_list(spec)
    seconds, measured = _seconds(session, configs if spec.method != "optuna" else configs * spec.trials)
    return {"count": run_count(spec), "settings": settings, "seconds": seconds, "measured_runs": measured}


class SweepRunOut(BaseModel):
    id: int
    name: str
    status: Status
    settings: dict[str, Any]
    step: int
    total_steps: int | None
    epoch: int
    total_epochs: int | None
    images_per_epoch: int | None
    best_swd: float | None
    swd: float | None
    loss_d: float | None
    loss_g: float | None
    d_x: float | None
    d_g_z: float | None
    scores: list[list[float]]  # [epoch, SWD] per finished epoch
    alerts: list[str]  # the open health alerts' messages
    error: str | None
    active_seconds: float


class SweepOut(BaseModel):
    id: int
    name: str
    spec: SweepSpec
    created_at: UtcTime
    stopped: bool
    status: str  # active (runs queued, running or being pruned, or trials left to ask), cancelled, finished
    planned: int
    counts: dict[str, int]
    best: dict[str, Any] | None
    runs: list[SweepRunOut] | None = None


def _sweep_json(session: Session, sweep: Sweep, with_runs: bool) -> dict:
    spec = SweepSpec.model_validate(sweep.spec)
    runs = list(session.scalars(select(Run).where(Run.sweep_id == sweep.id).order_by(Run.id)))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    planned = spec.trials if spec.method == "optuna" else len(runs)
    pruning = [r for r in runs if r.status == Status.CANCELLED and str(r.id) in (sweep.pruned or {})]  # to be marked
    asking = spec.method == "optuna" and not sweep.stopped and len(runs) < planned
    active = any(r.status in ACTIVE for r in runs) or bool(pruning) or asking
    scored = [r for r in runs if r.best_swd is not None]
    best = min(scored, key=lambda r: r.best_swd, default=None)
    out = {
        "id": sweep.id, "name": sweep.name, "spec": spec, "created_at": sweep.created_at, "stopped": sweep.stopped,
        "status": "active" if active else "cancelled" if sweep.stopped else "finished", "planned": planned,
        "counts": counts, "best": {"run_id": best.id, "name": best.name, "best_swd": best.best_swd} if best else None,
    }  # fmt: skip
    if with_runs:
        scores: dict[int, list[list[float]]] = {}
        rows = session.execute(
            select(Sample.run_id, Sample.epoch, Sample.swd)
            .where(Sample.run_id.in_([r.id for r in runs]), Sample.swd.is_not(None)).order_by(Sample.run_id, Sample.epoch)
        )  # fmt: skip
        for run_id, epoch, swd in rows:
            scores.setdefault(run_id, []).append([epoch, swd])
        out["runs"] = [_run_json(spec, r, scores.get(r.id, [])) for r in runs]
    return SweepOut.model_validate(out).model_dump(mode="json")


def _run_json(spec: SweepSpec, run: Run, scores: list[list[float]]) -> dict:
    per_epoch = run.total_steps // run.total_epochs if run.total_steps and run.total_epochs else None
    return {
        "id": run.id, "name": run.name, "status": run.status, "settings": settings_of(spec, run.config), "step": run.step,
        "total_steps": run.total_steps, "epoch": run.epoch, "total_epochs": run.total_epochs,
        "images_per_epoch": per_epoch * run.config["batch_size"] if per_epoch else None, "best_swd": run.best_swd,
        "swd": run.swd, "loss_d": run.loss_d, "loss_g": run.loss_g, "d_x": run.d_x, "d_g_z": run.d_g_z, "scores": scores,
        "alerts": [a.message for a in run.alerts if a.cleared_step is None], "error": run.error,
        "active_seconds": run.active_seconds,
    }  # fmt: skip


def _sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise HTTPException(404, f"sweep {sweep_id} not found")
    return sweep


@router.post("", status_code=201, response_model=SweepOut)
def create_sweep(spec: SweepSpec, request: Request, session: SessionDep) -> dict:
    """Store the sweep and queue its runs in order (grid, random), or its first trials (optuna)."""
    configs = _configs(spec, request)
    sweep = Sweep(name=(spec.name or "").strip() or "sweep", spec=spec.model_dump(mode="json"))
    session.add(sweep)
    session.flush()
    if not (spec.name or "").strip():
        sweep.name = f"sweep-{sweep.id}"
    if spec.method != "optuna":
        runs = [Run(name=f"{sweep.name} #{i + 1}", config=resolved(c.model_dump()), sweep_id=sweep.id)
                for i, c in enumerate(configs)]  # fmt: skip
        session.add_all(runs)
        session.flush()
        for run in runs:  # the first commits them all; each tells the pages and wakes the queue
            request.app.state.supervisor.submit(session, run)
    session.commit()
    if spec.method == "optuna":
        request.app.state.studies.advance(sweep.id)
    return _sweep_json(session, sweep, with_runs=True)


@router.get("", response_model=list[SweepOut])
def list_sweeps(session: SessionDep) -> list[dict]:
    """Newest first, without their runs (GET one sweep for those)."""
    return [_sweep_json(session, s, with_runs=False) for s in session.scalars(select(Sweep).order_by(Sweep.id.desc()))]


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: SweepId, session: SessionDep) -> dict:
    return _sweep_json(session, _sweep(session, sweep_id), with_runs=True)


def _each(action, run_ids: list[int]) -> None:
    """A supervisor action on each run; one that another change got to first is left as it is."""
    for run_id in run_ids:
        try:
            action(run_id)
        except (LookupError, TransitionError):
            pass


@router.post("/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep_id: SweepId, request: Request, session: SessionDep) -> dict:
    """Cancel every queued or running run (running ones save a checkpoint first); an Optuna sweep asks no more trials."""
    sweep = _sweep(session, sweep_id)
    sweep.stopped = True
    session.commit()
    ids = session.scalars(select(Run.id).where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE)).order_by(Run.id.desc()))
    _each(request.app.state.supervisor.cancel, list(ids))  # the queued ones last first: none starts meanwhile
    session.expire_all()
    return _sweep_json(session, sweep, with_runs=True)


@router.post("/{sweep_id}/resume", response_model=SweepOut)
def resume_sweep(sweep_id: SweepId, request: Request, session: SessionDep) -> dict:
    """Queue again every run that was cancelled, failed or interrupted (each continues from its checkpoint), in order;
    an Optuna sweep asks for trials again."""
    sweep = _sweep(session, sweep_id)
    sweep.stopped = False
    session.commit()
    runs = session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id))
    _each(request.app.state.supervisor.resume, [r.id for r in runs if r.resumable])
    if sweep.spec.get("method") == "optuna":
        request.app.state.studies.advance(sweep_id)
    session.expire_all()
    return _sweep_json(session, sweep, with_runs=True)


@router.delete("/{sweep_id}", status_code=204)
def delete_sweep(sweep_id: SweepId, request: Request, session: SessionDep) -> Response:
    """The sweep and all its runs, with their files; 409 while any of its runs is queued or running."""
    sweep = _sweep(session, sweep_id)
    busy = session.scalars(select(Run.id).where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE))).all()
    if busy:
        raise HTTPException(409, f"sweep {sweep_id} has {len(busy)} queued or running runs: cancel it before deleting it")
    with request.app.state.studies.lock:  # the Optuna driver makes no run for it meanwhile
        session.commit()  # a fresh read from here: a run it made since is seen
        ids = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id)))
        # Only runs that are not active, checked by the DELETE itself: a run resumed in between keeps the sweep.
        gone = session.execute(delete(Run).where(Run.sweep_id == sweep_id, Run.status.not_in(ACTIVE))).rowcount
        if gone != len(ids):
            session.rollback()
            raise HTTPException(409, f"sweep {sweep_id}: a run was resumed meanwhile; cancel the sweep before deleting it")
        session.delete(sweep)
        session.commit()
        request.app.state.studies.live.pop(sweep_id, None)
    for run_id in ids:
        shutil.rmtree(request.app.state.settings.runs_dir / str(run_id), ignore_errors=True)
    return Response(status_code=204)


@pages.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: SweepId):
    with request.app.state.sessions() as s:
        _sweep(s, sweep_id)
    return templates.TemplateResponse(request, "sweep.html", {"sweep_id": sweep_id, "modules": SWEEP_MODULES})
