"""The FastAPI application: database, live hub and supervisor, wired in the lifespan; routes in their own modules."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import api, auth, export, live, pages
from app.auth import TokenMiddleware, is_loopback
from app.db import make_engine, make_sessionmaker
from app.hub import Hub
from app.settings import Settings
from app.supervisor import Supervisor

log = logging.getLogger("ganboard")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not settings.token and not is_loopback(settings.host):
        raise RuntimeError(f"refusing to listen on {settings.host} without a token: set GANBOARD_TOKEN")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        app.state.settings = settings
        app.state.sessions = make_sessionmaker(engine)
        app.state.hub = Hub()
        app.state.supervisor = Supervisor(settings, app.state.sessions, app.state.hub)
        await app.state.supervisor.start()
        yield
        await app.state.supervisor.stop()
        engine.dispose()

    app = FastAPI(title="GANboard", summary="Launch and watch DCGAN training runs.", lifespan=lifespan)
    if settings.token:
        app.add_middleware(TokenMiddleware, token=settings.token)
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(export.router)
    app.include_router(live.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.ROOT / "static"), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # e.g. not UTF-8
            detail = [{"type": "body_invalid", "loc": ["body"], "msg": "the body is not valid UTF-8 JSON"}]
            return JSONResponse({"detail": detail}, status_code=422)
        if request.url.path.startswith(("/api", "/ws")) or exc.status_code < 400:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return HTMLResponse(_error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)  # the traceback goes to the log, never to the user
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    return app


def _error_page(status: int, detail: str) -> str:
    return (
        f"<!doctype html><title>{status} · GANboard</title><link rel=stylesheet href=/static/style.css>"
        f"<main class=error-page><h1>{status}</h1><p>{escape(detail)}</p><p><a href=/>Back to the runs</a></p></main>"
    )
