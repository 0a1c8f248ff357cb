"""What the tests, benches and scripts share: a real uvicorn server in its own process on a free loopback port, with
a temporary runs dir and its database (the SQLite file in it, or any URL: tests/databases.py makes PostgreSQL ones),
polling with a deadline, and a tiny training config.

`Server.stop()` ends the server and then the worker processes it started, by their pids in its database, so nothing a
test started outlives it and nothing else is touched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
# Small enough that a run takes seconds on 2 CPU cores; no FID/KID (their last-epoch scoring takes seconds more).
def page_messages(text: str | bytes) -> list[dict]:
    """The messages of one frame a run page received: a snapshot, or a JSON array of live messages (app/runs/hub.py)."""
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


TINY = dict(dataset="procedural", image_size=32, ngf=8, ndf=8, nz=16, batch_size=256, epochs=2, device="cpu", fid=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value. The deadline only guards against hanging forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Server:
    url: str
    runs_dir: Path
    database_url: str
    proc: subprocess.Popen
    client: httpx.Client

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def create(self, **config) -> dict:
        r = self.client.post("/api/runs", json={"config": {**TINY, **config}})
        assert r.status_code == 201, r.text
        return r.json()

    def run(self, run_id: int) -> dict:
        return self.client.get(f"/api/runs/{run_id}").json()

    def wait_status(self, run_id: int, *statuses: str, timeout: float = 180) -> dict:
        return wait_for(lambda: (r := self.run(run_id))["status"] in statuses and r, timeout, what=f"run {run_id} {statuses}")

    def images_per_s(self, run_id: int, warmup: int = 10) -> float:
        """A run's training speed from the times its batch rows were recorded, after `warmup` steps."""
        metrics = self.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 10**6}).json()
        steps, times = metrics["step"], metrics["time"]
        return self.run(run_id)["config"]["batch_size"] * (len(steps) - warmup) / (times[-1] - times[warmup - 1])

    def stop(self) -> None:
        """Stop the server, then the workers it started (they outlive a server on purpose)."""
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for pid in worker_pids(self.runs_dir, self.database_url):
            try:
                os.killpg(pid, signal.SIGKILL)  # a worker leads its own process group
            except ProcessLookupError:
                pass


def worker_pids(runs_dir: Path, database_url: str) -> list[int]:
    """The live workers of the runs in this runs dir: pids from its database, each checked to still be a worker of
    this runs dir (a pid may have been reused)."""
    if database_url == sqlite_url(runs_dir) and not (runs_dir / "ganboard.db").exists():
        return []  # the server never got as far as making it (and connecting would)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            pids = list(conn.scalars(text("SELECT pid FROM runs WHERE pid IS NOT NULL")))
    finally:
        engine.dispose()
    ours = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trainer.worker" in cmdline and str(runs_dir).encode() in b" ".join(cmdline):
            ours.append(pid)
    return ours


def sqlite_url(runs_dir: Path) -> str:
    """The server's default database: a SQLite file in its runs dir."""
    return f"sqlite:///{runs_dir / 'ganboard.db'}"


def start_server(runs_dir: Path, port: int | None = None, wait_path: str = "/api/runs", database_url: str | None = None,
                 replayed: bool = True, **env: str) -> Server:  # fmt: skip
    """A server on `runs_dir`, once it answers `wait_path`, and (`replayed`, where that is `/api/runs`) once it has
    replayed the journals it found behind its database (app/storage/journal.py replays them while it serves)."""
    port = port or free_port()
    database_url = database_url or sqlite_url(runs_dir)
    log = (runs_dir.parent / f"server-{port}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "GANBOARD_RUNS_DIR": str(runs_dir), "GANBOARD_PORT": str(port), "GANBOARD_GRACE_SECONDS": "20",
             "GANBOARD_DATA_ROOTS": json.dumps([str(runs_dir.parent)]), "GANBOARD_DATABASE_URL": database_url, **env},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # The client drops a pooled connection idle for 1 s, before the server's keep-alive (5 s, app/web/limits.py) can close
    # it under a request just sent: httpx's own default is the same 5 s, a race a slow server loses now and then.
    client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(keepalive_expiry=1))

    def up() -> bool:
        assert proc.poll() is None, f"server exited; see {log.name}"
        try:
            return client.get(wait_path).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 60, what="the server to start")
    if replayed and wait_path == "/api/runs":
        wait_for(lambda: not any(r["replaying"] for r in client.get(wait_path).json()), 600, what="the journals' replay")
    return Server(url, runs_dir, database_url, proc, client)


@contextmanager
def scratch_server(database_url: str | None = None, **env: str) -> Iterator[Server]:
    """A server on a temporary runs dir (and its SQLite file unless `database_url` says otherwise), for benches and
    scripts; stopped and removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        runs.mkdir()
        server = start_server(runs, database_url=database_url, **env)
        try:
            yield server
        finally:
            server.stop()


