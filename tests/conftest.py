"""Shared fixtures over tests/harness.py (which benches and scripts import too) and tests/databases.py.

A test that takes `db_url` runs once per database kind: on a SQLite file, and on a PostgreSQL database of its own
(skipped, saying why, where there is no PostgreSQL; failed in CI). The `server` fixture serves SQLite; a test that
should also run through a server on PostgreSQL says `@pytest.mark.parametrize("server", KINDS, indirect=True)`.

Every test gets markers from what it starts, so that `make test-fast` can leave out what takes time:

- `server`: starts a real uvicorn server (and, through it, worker processes): tests/browser, a test that uses a server
  fixture, and every test of a module that calls `start_server`/`scratch_server` or runs the worker itself;
- `worker`: trains in this process (`trainer.loop.train` or the CLI), runs Inception, or starts sampler/trainer processes;
- `browser`: drives Chromium (tests/browser);
- `slow`: a property-based fuzz of the whole API (tests/test_fuzz.py);
- `gpu`: needs CUDA (tests/gpu).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

# torch's OpenMP threads spin at every barrier; on a machine that other work shares, a spinning thread waits for a
# preempted one and a 2-thread run of the tiny config took 166 s instead of 22 s (measured with other tests running).
# Set before torch starts its threads; servers and workers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.databases import KINDS, fresh_database, postgres_missing  # noqa: E402
from tests.harness import REPO, TINY, Server, free_port, scratch_server, start_server, wait_for  # noqa: F401, E402

SERVER_FIXTURES = {"server", "solo", "running", "page", "fake_run"}
WORKER_CALLS = ("import train", "loop.train", "trainer.cli", "trainer.sampler", "InceptionFeatures")
_SOURCES: dict[str, str] = {}


def _source(item: pytest.Item) -> str:
    path = str(item.path)
    if path not in _SOURCES:
        _SOURCES[path] = item.path.read_text()
    return _SOURCES[path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts, source = item.path.parts, _source(item)
        if "browser" in parts:
            item.add_marker("browser")
        if ("browser" in parts or SERVER_FIXTURES & set(item.fixturenames)
                or any(call in source for call in ("start_server(", "scratch_server(", "trainer.worker"))):  # fmt: skip
            item.add_marker("server")
        if any(call in source for call in WORKER_CALLS):
            item.add_marker("worker")
        if item.path.name == "test_fuzz.py":
            item.add_marker("slow")
        if "gpu" in parts:
            item.add_marker("gpu")


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
