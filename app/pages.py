"""The two pages. They render a shell; the page scripts fetch everything else from the API and the websocket."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api import RunId
from app.db import Run
from trainer.protocol import METRICS, Status

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=ROOT / "templates")
router = APIRouter(include_in_schema=False)
# Preloaded by the run page, so the browser fetches them all at once instead of one import level at a time.
RUN_MODULES = sorted(p.name for p in (ROOT / "static" / "run").glob("*.js"))


@router.get("/", response_class=HTMLResponse)
def index(request: Request, clone: int | None = None):
    statuses = [s.value for s in Status]  # the run list's status filter
    return templates.TemplateResponse(request, "index.html", {"clone_id": clone, "statuses": statuses})


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId):
    with request.app.state.sessions() as s:
        if s.get(Run, run_id) is None:
            raise HTTPException(404, f"run {run_id} not found")
    metrics = [asdict(m) for m in METRICS]  # the page's charts follow the protocol's metric list
    return templates.TemplateResponse(request, "run.html", {"run_id": run_id, "metrics": metrics, "modules": RUN_MODULES})
