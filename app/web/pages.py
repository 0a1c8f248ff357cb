"""The pages. They render a shell; the page scripts fetch everything else from the API and the websocket."""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from app.storage.db import Run
from app.web.deps import RunId, run_or_404
from trainer.config import FIELD_GROUPS, RESUME_CHANGES
from trainer.protocol import ACTIVE, BEST, LATEST, METRICS, RESUMABLE, RESUME, Status

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ROOT / "docs"
templates = Jinja2Templates(directory=ROOT / "templates")
router = APIRouter(include_in_schema=False)
IMPORT = re.compile(r'^import\s(?:[^;]*?\sfrom\s+)?"(\.{1,2}/[^"]+)"', re.M)  # static imports of the page's own modules


def module_graph(entry: str) -> list[str]:
    """The URLs of a page's entry module and every module it imports, directly or not. The page preloads them all, so
    the browser fetches them at once instead of one import level at a time (~100 ms less to the first chart)."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        url = todo.pop()
        if url not in seen:
            seen.add(url)
            source = (ROOT / url.lstrip("/")).read_text()
            todo += [posixpath.normpath(posixpath.join(posixpath.dirname(url), m)) for m in IMPORT.findall(source)]
    return sorted(seen)


RUN_MODULES = module_graph("/static/run/main.js")
COMPARE_MODULES = module_graph("/static/compare/main.js")
LIST_MODULES = module_graph("/static/list/main.js")
MAX_COMPARED = 10  # one clearly different colour per run (static/compare/overlay.js has ten); more is the table's job

# The Python constants the page scripts go by, put into every page as JSON (base.html; static/common.js reads them), so
# that no script holds a copy of its own.
templates.env.globals["page_constants"] = {
    "ACTIVE": [s.value for s in Status if s in ACTIVE],
    "RESUMABLE": [s.value for s in Status if s in RESUMABLE],
    "FIELD_GROUPS": list(FIELD_GROUPS),  # the new-run form's fieldsets, in order
    "RESUME_CHANGES": list(RESUME_CHANGES),  # what "Resume with changes…" offers
    "LATEST": [*LATEST, RESUME],  # the checkpoints the run page lists first, then the best pair
    "BEST": list(BEST),
    "MAX_COMPARED": MAX_COMPARED,
}


@router.get("/", response_class=HTMLResponse)
def index(request: Request, clone: int | None = None):
    statuses = [s.value for s in Status]  # the run list's status filter
    context = {"clone_id": clone, "statuses": statuses, "modules": LIST_MODULES}
    return templates.TemplateResponse(request, "index.html", context)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId):
    with request.app.state.sessions() as s:
        run_or_404(s, run_id)
    metrics = [asdict(m) for m in METRICS]  # the page's charts follow the protocol's metric list
    return templates.TemplateResponse(request, "run.html", {"run_id": run_id, "metrics": metrics, "modules": RUN_MODULES})


def clipped(text: str) -> str:
    """Text from the address as an error quotes it: at most 20 characters."""
    return text if len(text) <= 20 else text[:20] + "…"



def parse_run_ids(text: str | None) -> tuple[list[int], str | None]:
    """`?runs=3,7,9` as run ids in the given order, without repeats, or the reason it cannot be read."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        return [], None  # nothing chosen yet: the page says how to choose
    bad = [p for p in parts if not p.isdecimal() or len(p) > 18 or int(p) < 1]  # length first: int() fails on 4,301 digits
    if bad:
        shown = ", ".join(clipped(p) for p in bad[:5])
        return [], f"runs: not a run id: {shown} (give positive whole numbers, comma-separated)"
    ids = list(dict.fromkeys(int(p) for p in parts))
    if len(ids) > MAX_COMPARED:
        return [], f"runs: {len(ids)} runs chosen; at most {MAX_COMPARED} can be compared at once (one colour each)"
    return ids, None


# The comparison page's x axes (static/compare/overlay.js xValues): value -> (the option's text, its title).
X_AXES = {"step": ("step", "batches trained"), "epoch": ("epoch", "passes over the data"),
          "time": ("wall time", "seconds since the run started"),
          "images": ("images seen", "steps x batch size: runs of different batch sizes line up")}  # fmt: skip


def view_error(x: str, group: str | None) -> str | None:
    """Why `?x=` or `?group=` cannot be shown, or None."""
    if x not in X_AXES:
        return f"x: {clipped(x)!r} is not an x axis (give one of {', '.join(X_AXES)})"
    if group not in (None, "seeds"):
        return f"group: {clipped(group)!r} is not a grouping (give seeds, or leave it out)"
    return None


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, runs: str | None = None, x: str = "step", group: str | None = None):
    """The comparison page; `x` (step, epoch, time, images) and `group=seeds` choose the view, so a link opens it again.
    A garbled list, too many runs or an unknown view answer 422, a list of only unknown runs 404; the page says which
    and why, and shows the runs it knows."""
    ids, error = parse_run_ids(runs)
    if error is None and (error := view_error(x, group)):
        ids = []
    unknown: list[int] = []
    if ids:
        with request.app.state.sessions() as s:
            found = set(s.scalars(select(Run.id).where(Run.id.in_(ids))))
        unknown = [i for i in ids if i not in found]
        ids = [i for i in ids if i in found]
        if not ids:
            error = f"runs: no run with id {', '.join(map(str, unknown))}"
    status = 404 if ids == [] and unknown else 422 if error else 200
    context = {"run_ids": ids, "unknown": unknown, "error": error, "max_runs": MAX_COMPARED,
               "metrics": [asdict(m) for m in METRICS], "modules": COMPARE_MODULES, "x_axes": X_AXES, "x": x,
               "group": group}  # fmt: skip
    return templates.TemplateResponse(request, "compare.html", context, status_code=status)


@router.get("/guide/{name}", response_class=PlainTextResponse)
def guide(name: str):
    """A page of docs/ the app links to (health.md: what each alert means), as text, so the link works offline."""
    path = GUIDES / name
    if not re.fullmatch(r"[a-z]+\.md", name) or not path.is_file():
        raise HTTPException(404, f"no guide named {name!r}")
    return PlainTextResponse(path.read_text(), media_type="text/plain; charset=utf-8")
