"""What the route modules share (the shape of FastAPI's full-stack template): the database session as a dependency,
the path parameters' types, the run a path names, and the 422 that names a body field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from app.storage.db import Run
from trainer.protocol import MAX_INT


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RunId = Annotated[int, PathParam(ge=1, le=MAX_INT, description="the run's id")]  # SQLite integers are 64-bit
SweepId = Annotated[int, PathParam(ge=1, le=MAX_INT, description="the sweep's id")]


def run_or_404(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found")
    return run


def body_error(loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    """A 422 naming the request body's field at `loc` (("config", "lr_g")) and the reason, as FastAPI's own are."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": msg}])
