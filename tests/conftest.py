"""Shared fixtures over tests/harness.py (which benches and scripts import too), and the markers every test gets from
what it starts, so that `make test-fast` can leave out what takes time:

- `server`: starts a real uvicorn server (and, through it, worker processes): tests/browser, a test that uses a server
  fixture, and every test of a module that calls `start_server`/`scratch_server` or runs the worker itself;
- `worker`: trains in this process (`trainer.loop.train` or the CLI), runs Inception, or starts sampler/trainer processes;
- `browser`: drives Chromium (tests/browser);
- `slow`: a property-based fuzz of the whole API (tests/test_fuzz.py);
- `gpu`: needs CUDA (tests/gpu).
"""

from __future__ import annotations

import os

import pytest

# torch's OpenMP threads spin at every barrier; on a machine that other work shares, a spinning thread waits for a
# preempted one and a 2-thread run of the tiny config took 166 s instead of 22 s (measured with other tests running).
# Set before torch starts its threads; servers and workers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.harness import REPO, TINY, Server, free_port, scratch_server, start_server, wait_for  # noqa: F401

SERVER_FIXTURES = {"server", "solo", "running", "page", "fake_run"}
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
        if any(call in source for call in ("import train", "loop.train", "trainer.cli", "trainer.sampler", "InceptionFeatures")):
            item.add_marker("worker")
        if item.path.name == "test_fuzz.py":
            item.add_marker("slow")
        if "gpu" in parts:
            item.add_marker("gpu")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("server") / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_MAX_CONCURRENT="2")
    yield srv
    srv.stop()
