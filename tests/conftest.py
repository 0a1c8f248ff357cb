"""Shared fixtures over tests/harness.py (which benches and scripts import too)."""

from __future__ import annotations

import os

import pytest

# torch's OpenMP threads spin at every barrier; on a machine that other work shares, a spinning thread waits for a
# preempted one and a 2-thread run of the tiny config took 166 s instead of 22 s (measured with other tests running).
# Set before torch starts its threads; servers and workers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.harness import REPO, TINY, Server, free_port, scratch_server, start_server, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("server") / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_MAX_CONCURRENT="2")
    yield srv
    srv.stop()
