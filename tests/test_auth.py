"""An exposed server is locked: token required everywhere, login cookie for browsers, no cross-site posts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import REPO, TINY, free_port, start_server, wait_for

TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    runs = tmp_path_factory.mktemp("locked") / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_TOKEN=TOKEN, wait_path="/login")
    yield srv
    srv.stop()


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GANBOARD_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--runs-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert "GANBOARD_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_everything_needs_the_token(locked):
    anon = httpx.Client(base_url=locked.url, follow_redirects=False)
    assert anon.get("/api/runs").status_code == 401
    assert anon.post("/api/runs", json={"config": TINY}).status_code == 401
    assert anon.get("/openapi.json").status_code == 401
    page = anon.get("/runs/1")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/runs/1"
    assert anon.get("/api/runs/1/checkpoints/netg.pth").status_code == 401
    with pytest.raises(InvalidStatus):
        connect(f"{locked.ws_url}/ws/runs/1").close()
    assert anon.get("/static/style.css").status_code == 200  # the login page needs its style

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert anon.get("/api/runs", headers=bearer).status_code == 200
    assert anon.get("/api/runs", params={"token": TOKEN}).status_code == 200
    assert anon.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_login_sets_a_safe_cookie_and_cross_site_posts_are_refused(locked):
    browser = httpx.Client(base_url=locked.url, follow_redirects=False)
    assert browser.post("/login", data={"token": "wrong", "next": "/"}).status_code == 401
    r = browser.post("/login", data={"token": TOKEN, "next": "/runs/5"})
    assert r.status_code == 303 and r.headers["location"] == "/runs/5"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
    assert browser.get("/").status_code == 200
    assert browser.post("/login", data={"token": TOKEN, "next": "//evil.example"}).headers["location"] == "/"

    same_site = browser.post("/api/runs", json={"config": TINY}, headers={"Origin": locked.url})
    assert same_site.status_code == 201
    browser.post(f"/api/runs/{same_site.json()['id']}/cancel", headers={"Origin": locked.url})
    cross = browser.post("/api/runs", json={"config": TINY}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403


def test_a_worker_token_opens_only_its_own_run(locked):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    ids = [locked.client.post("/api/runs", json={"config": {**TINY, "epochs": 1000}}, headers=bearer).json()["id"] for _ in range(2)]

    def token_of_first_worker() -> str | None:  # what the supervisor handed to run A's worker process
        pid = locked.client.get(f"/api/runs/{ids[0]}", headers=bearer).json()["pid"]
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if pid else []
        except OSError:
            return None
        return next((e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"GANBOARD_WORKER_TOKEN=")), None)

    worker_token = wait_for(token_of_first_worker, what="run A's worker")
    with pytest.raises(InvalidStatus):  # run B's socket refuses run A's token
        connect(f"{locked.ws_url}/ws/worker/{ids[1]}", additional_headers={"Authorization": f"Bearer {worker_token}"})
    assert httpx.get(f"{locked.url}/api/runs", headers={"Authorization": f"Bearer {worker_token}"}).status_code == 401
    for run_id in ids:
        locked.client.post(f"/api/runs/{run_id}/cancel", headers=bearer)
