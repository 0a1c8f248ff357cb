"""The FastAPI application: database, live hub and supervisor, wired in the lifespan; routes in their own modules."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.runs.executors.slurm import SlurmExecutor
from app.runs.hub import Hub
from app.runs.study import Studies
from app.runs.supervisor import Supervisor
from app.settings import Settings
from app.storage import history, journal
from app.storage.db import make_engine, make_sessionmaker
from app.web import api, auth, export, live, pages, sampling, sweep_api
from app.web.animations import Animations
from app.web.auth import TokenMiddleware, is_loopback, redact_token_logs
from app.web.guard import GuardMiddleware
from app.web.limits import BodyLimitMiddleware, raise_open_files_limit
from app.web.pages import templates

log = logging.getLogger("ganboard")
VENDOR = "/static/vendor/"
LOCK = "ganboard.lock"  # in the runs folder: one server per runs folder


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not settings.token and not is_loopback(settings.host):
        raise RuntimeError(f"refusing to listen on {settings.host} without a token: set GANBOARD_TOKEN")
    redact_token_logs(settings.token)  # here, so `uvicorn app.main:create_app --factory` is covered, and `ganboard serve`
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    runs_lock = _lock_runs_dir(settings.runs_dir)
    open_files = raise_open_files_limit()
    if settings.executor == "slurm":  # here, not at start-up: a cluster that cannot run our jobs is a clear error now
        SlurmExecutor(settings).check(settings.runs_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url)
        app.state.settings = settings
        app.state.sessions = make_sessionmaker(engine)
        app.state.hub = Hub()
        app.state.animations = Animations()
        app.state.supervisor = Supervisor(settings, app.state.sessions, app.state.hub)
        # What workers wrote while the server was down: replayed while it serves; the supervisor leaves those runs alone
        # until then (app/storage/journal.py).
        backlog = await run_in_threadpool(journal.Backlog, app.state.sessions, settings.runs_dir)
        await run_in_threadpool(history.refresh_all, app.state.sessions)
        await app.state.supervisor.start()
        loop = asyncio.get_running_loop()

        def caught_up(run_id: int) -> None:
            app.state.supervisor.reconcile(only=run_id)
            loop.call_soon_threadsafe(app.state.hub.resync, run_id)

        backlog.start(caught_up, progress=lambda run_id: loop.call_soon_threadsafe(app.state.hub.resync, run_id))
        app.state.studies = Studies(app.state.sessions, app.state.supervisor, settings.max_concurrent)
        await app.state.studies.start()
        yield
        await run_in_threadpool(backlog.stop)
        await app.state.studies.stop()
        await app.state.supervisor.stop()
        app.state.supervisor.dbfile.close()
        app.state.animations.close()
        os.close(runs_lock)

    app = FastAPI(
        title="GANboard", summary="Launch and watch DCGAN training runs.", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.add_middleware(BodyLimitMiddleware)
    app.state.open_files = open_files  # for `ganboard serve`'s uvicorn options (app/web/limits.py)
    if settings.token:
        app.add_middleware(TokenMiddleware, token=settings.token)
    # Added last, so it runs first: a request from a rebound name or another origin never reaches the token check.
    app.add_middleware(
        GuardMiddleware, bind_host=settings.host, port=settings.port, allowed_hosts=settings.allowed_hosts
    )
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(api.about)
    app.include_router(export.router)
    app.include_router(sampling.router)
    app.include_router(live.router)
    app.include_router(sweep_api.router)
    app.include_router(sweep_api.pages)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.ROOT / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:  # served from static/vendor/, so it works offline
        return _in_app(get_swagger_ui_html(openapi_url=app.openapi_url, title="GANboard API", swagger_js_url=VENDOR + "swagger-ui-bundle.js",
                                           swagger_css_url=VENDOR + "swagger-ui.css", swagger_favicon_url="/static/favicon.svg"))  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _in_app(get_redoc_html(openapi_url=app.openapi_url, title="GANboard API", redoc_js_url=VENDOR + "redoc.standalone.js",
                                      redoc_favicon_url="/static/favicon.svg", with_google_fonts=False))  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # e.g. not UTF-8
            detail = [{"type": "body_invalid", "loc": ["body"], "msg": "the body is not valid UTF-8 JSON"}]
            return JSONResponse({"detail": detail}, status_code=422)
        if request.url.path.startswith(("/api", "/ws")) or exc.status_code < 400:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return _error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        """FastAPI's own answer, except that the input echoed back may be NaN or Infinity, which JSON cannot carry; a
        page's address that does not parse (/runs/abc) gets a page saying why."""
        if not request.url.path.startswith(("/api", "/ws")):
            detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
            return _error_page(request, 422, detail)
        return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)  # the traceback goes to the log, never to the user
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    return app


# The API docs pages as parts of the app: the theme the app shows (its toggle's choice, else the system's) and a bar
# leading back to the app and between the two docs pages.
_DOCS_HEAD = """<link rel="stylesheet" href="/static/docs.css"><script>
  document.documentElement.dataset.theme = localStorage.getItem("ganboard-theme")
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
</script>"""
_DOCS_BAR = """<nav class="docs-bar"><a href="/">&larr; GANboard</a><a href="/docs">Swagger UI</a><a href="/redoc">ReDoc</a>
  <a href="/openapi.json">openapi.json</a></nav>"""


def _in_app(page: HTMLResponse) -> HTMLResponse:
    html = page.body.decode().replace("<head>", "<head>" + _DOCS_HEAD, 1).replace("<body>", "<body>" + _DOCS_BAR, 1)
    return HTMLResponse(html)


def _lock_runs_dir(runs_dir: Path) -> int:
    """Hold `runs_dir/ganboard.lock` for the life of this server: two servers on one runs folder would both start its
    queued runs, and each take the other's workers for dead. The lock goes with the process, however it ends."""
    fd = os.open(runs_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RuntimeError(
            f"another GANboard server (pid {holder}) uses the runs folder {runs_dir}: stop it first, or give this one "
            "another --runs-dir (GANBOARD_RUNS_DIR)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """An error as the app's own page (its top bar leads back), never a traceback."""
    return templates.TemplateResponse(request, "error.html", {"status": status, "detail": detail}, status_code=status)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


