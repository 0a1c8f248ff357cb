"""Shared fixtures over tests/harness.py (which benches and scripts import too) and tests/databases.py.

A test that takes `db_url` runs once per database kind: on a SQLite file, and on a PostgreSQL database of its own
(skipped, saying why, where there is no PostgreSQL; failed in CI). The `server` fixture serves SQLite; a test that
should also run through a server on PostgreSQL says `@pytest.mark.parametrize("server", KINDS, indirect=True)`.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.databases import KINDS, fresh_database, postgres_missing
from tests.harness import REPO, TINY, Server, free_port, scratch_server, start_server, wait_for  # noqa: F401


def database(request, folder: Path) -> AbstractContextManager[str]:
    """A fresh database of the kind the test is parametrized with (SQLite where it is not)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "postgresql" and (why := postgres_missing()):
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return fresh_database(kind, folder)


@pytest.fixture(params=KINDS)
def db_url(request, tmp_path):
    with database(request, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite"])
def server(request, tmp_path_factory):
    runs = tmp_path_factory.mktemp("server") / "runs"
    runs.mkdir()
    with database(request, runs) as url:
        srv = start_server(runs, database_url=url, GANBOARD_MAX_CONCURRENT="2")
        yield srv
        srv.stop()
