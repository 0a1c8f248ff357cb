"""Shared fixtures over tests/harness.py (which benches and scripts import too)."""

from __future__ import annotations

import pytest

from tests.harness import REPO, TINY, Server, free_port, scratch_server, start_server, wait_for  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("server") / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_MAX_CONCURRENT="2")
    yield srv
    srv.stop()
