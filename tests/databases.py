"""The databases tests and benches run on: a SQLite file, or a PostgreSQL database of their own.

PostgreSQL is the server that GANBOARD_TEST_PG_URL names (`scripts/services.sh up` starts one, `services.sh env` prints
the variable, CI sets it). Each use gets a new database `ganboard_test_<random>` on it, made by the URL's role (which
needs CREATEDB) and dropped afterwards, so no test sees another's rows. Where the variable is unset or the server does
not answer, `postgres_missing()` says why, and the PostgreSQL cases skip with that reason (fail in CI: `CI=true`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

PG_URL_VAR = "GANBOARD_TEST_PG_URL"
KINDS = ("sqlite", "postgresql")


def _admin(url: str) -> Engine:
    """An engine on the server's own database, outside transactions (CREATE/DROP DATABASE cannot run in one)."""
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5})


@cache
def postgres_missing() -> str | None:
    """Why there is no PostgreSQL to test on here; None when there is."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        return f'{PG_URL_VAR} is not set: no PostgreSQL to test on (scripts/services.sh up; eval "$(scripts/services.sh env)")'
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        with _admin(url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, ImportError) as e:
        return f"PostgreSQL at {shown} ({PG_URL_VAR}) does not answer: {str(e).splitlines()[0]}"
    return None


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a database nobody used yet: `folder`/ganboard.db (SQLite, the server's default file when `folder` is
    its runs dir), or a new PostgreSQL database, dropped when the block ends (with whatever still connects to it)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'ganboard.db'}"
        return
    if why := postgres_missing():
        raise RuntimeError(why)
    base = make_url(os.environ[PG_URL_VAR])
    name = f"ganboard_test_{secrets.token_hex(6)}"
    admin = _admin(os.environ[PG_URL_VAR])
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
