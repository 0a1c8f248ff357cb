"""Schemathesis fuzzes every route of the OpenAPI schema against the real server: no input gives a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_server

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (pip install -e '.[test]')")
def test_no_input_gives_a_server_error(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = start_server(runs)
    try:
        done = subprocess.run(
            [SCHEMATHESIS, "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "25", "--seed", "1"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert server.proc.poll() is None
    finally:
        for run in server.client.get("/api/runs").json():  # runs the fuzzer created may be training
            server.client.post(f"/api/runs/{run['id']}/cancel")
        server.stop()  # and the workers it started
