"""Fault figures for docs/reliability.md: how fast a killed worker is noticed, how long a server restart interrupts the
stream, how long the server takes to replay a run trained while it was down, to restore a deleted database, and to
replay a journal; and whether anything was lost or stored twice. Real server, real workers, CPU.
Run: `.venv/bin/python bench/faults.py [worker] [server] [outage] [database] [replay]` (default: all).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import start_server, wait_for  # noqa: E402


def steps_of(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()["step"]


def worker_killed(runs: Path) -> None:
    server = start_server(runs)
    try:
        run = server.create(epochs=1000, save_every=1)
        wait_for(lambda: server.run(run["id"])["epoch"] >= 1, what="a checkpoint")
        killed = time.monotonic()
        os.kill(server.run(run["id"])["pid"], signal.SIGKILL)
        server.wait_status(run["id"], "failed")
        noticed = time.monotonic() - killed
        server.client.post(f"/api/runs/{run['id']}/resume")
        start = wait_for(lambda: (r := server.run(run["id"]))["status"] == "running" and r["total_steps"] and r["step"])
        wait_for(lambda: server.run(run["id"])["step"] > start + 20)
        server.client.post(f"/api/runs/{run['id']}/cancel")
        server.wait_status(run["id"], "cancelled")
        steps = steps_of(server, run["id"])
        print(f"kill -9 of a worker: run failed {noticed:.1f} s later; resumed from step {start}; "
              f"{len(steps)} steps stored, {len(steps) - len(set(steps))} twice, gaps: {steps != list(range(1, len(steps) + 1))}")  # fmt: skip
    finally:
        server.stop()


def kill_server(server) -> int:
    """kill -9 of the server process (no shutdown, no goodbye); returns its port, for the restart."""
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    return int(server.url.rsplit(":", 1)[1])


def server_killed(runs: Path) -> None:
    server = start_server(runs)
    try:
        run = server.create(epochs=8)
        wait_for(lambda: server.run(run["id"])["step"] > 10)
        port = kill_server(server)
        down = time.monotonic()
        before = len(steps_of_db(runs, run["id"]))
        server = start_server(runs, port=port)
        back = time.monotonic()
        wait_for(lambda: len(steps_of(server, run["id"])) > before)
        resumed = time.monotonic()
        done = server.wait_status(run["id"], "completed", "failed", "interrupted")
        steps = steps_of(server, run["id"])
        print(f"server kill -9 and restart: server back after {back - down:.1f} s, worker's rows flowing again "
              f"{resumed - back:.1f} s later; run {done['status']}, {len(steps)} of {done['total_steps']} steps stored, "
              f"{len(steps) - len(set(steps))} twice")  # fmt: skip
    finally:
        server.stop()


def outage(runs: Path) -> None:
    """The server killed at step 5 and left down until the worker has finished the run and stopped waiting."""
    env = {"GANBOARD_ACK_WAIT_SECONDS": "1"}
    server = start_server(runs, **env)
    run = server.create(epochs=4)
    wait_for(lambda: server.run(run["id"])["step"] >= 5)
    pid = server.run(run["id"])["pid"]
    port = kill_server(server)
    before = len(steps_of_db(runs, run["id"]))
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], 600)
    started = time.monotonic()
    server = start_server(runs, port=port, **env)
    try:
        up = time.monotonic() - started
        done = server.run(run["id"])
        steps = steps_of(server, run["id"])
        replay = re.search(r"stored (\d+) messages from the runs' journals in ([\d.]+) s", log_of(runs, port))
        print(f"server down from step {before} to the run's end: back up {up:.1f} s after the restart, "
              f"{replay[1]} journal messages replayed in {replay[2]} s; run {done['status']}, "
              f"{len(steps) - before} rows replayed, {len(steps)} of {done['total_steps']} steps, "
              f"{len(steps) - len(set(steps))} twice")  # fmt: skip
    finally:
        server.stop()


def database_deleted(runs: Path) -> None:
    server = start_server(runs)
    try:
        run = server.create(epochs=4)
        wait_for(lambda: server.run(run["id"])["step"] >= 5)
        port = int(server.url.rsplit(":", 1)[1])
        deleted = time.monotonic()
        (runs / "ganboard.db").unlink()
        restored = wait_for(lambda: re.search(r"is restored in ([\d.]+) s; (\d+) messages", log_of(runs, port)), 60)
        noticed = time.monotonic() - deleted
        done = server.wait_status(run["id"], "completed", "failed")
    finally:
        server.stop()
    server = start_server(runs, port=port)
    try:
        steps = steps_of(server, run["id"])
        print(f"ganboard.db deleted while serving: restored {noticed:.1f} s later (the copy took {restored[1]} s, "
              f"{restored[2]} journal messages replayed after it); run {done['status']}; after a restart "
              f"{len(steps)} of {done['total_steps']} steps, {len(steps) - len(set(steps))} twice")  # fmt: skip
    finally:
        server.stop()


def replay_speed(runs: Path) -> None:
    """The server's replay alone: a journal of 5,000 batch messages of 10 rows into a fresh database."""
    from app.storage.db import Run, make_engine, make_sessionmaker
    from app.storage.journal import replay
    from trainer.journal import JournalWriter
    from trainer.protocol import ROW_COLUMNS, BatchMessage, StatusMessage

    sessions = make_sessionmaker(make_engine(f"sqlite:///{runs / 'ganboard.db'}"))
    with sessions.begin() as s:
        s.add(Run(id=1, name="bench", config={"batch_size": 64}, status="running", attempt=1))
    journal = JournalWriter(runs / "1" / "journal.jsonl")
    journal.write(StatusMessage(seq=1, attempt=1, status="running", step=0, epoch=0, total_steps=50_000,
                                total_epochs=1, device="cpu").model_dump_json())  # fmt: skip
    for seq in range(2, 5002):
        steps = list(range((seq - 2) * 10 + 1, (seq - 1) * 10 + 1))
        rows = {**{c: [0.5] * 10 for c in ROW_COLUMNS}, "step": steps, "epoch": [1] * 10, "batch": steps}
        journal.write(BatchMessage(seq=seq, attempt=1, rows=rows).model_dump_json())
    journal.close()
    started = time.monotonic()
    stored = replay(sessions, 1, runs / "1")
    took = time.monotonic() - started
    print(f"replay of a journal: {stored} messages ({(stored - 1) * 10} rows) in {took:.2f} s: "
          f"{stored / took:,.0f} messages/s, {(stored - 1) * 10 / took:,.0f} rows/s")  # fmt: skip


def log_of(runs: Path, port: int) -> str:
    return (runs.parent / f"server-{port}.log").read_text()


def steps_of_db(runs: Path, run_id: int) -> list[int]:
    db = sqlite3.connect(runs / "ganboard.db")
    try:
        return [s for (s,) in db.execute("SELECT step FROM metrics WHERE run_id = ?", (run_id,))]
    finally:
        db.close()


CASES = {"worker": worker_killed, "server": server_killed, "outage": outage, "database": database_deleted,
         "replay": replay_speed}  # fmt: skip


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            runs = Path(tmp) / "runs"
            runs.mkdir()
            CASES[name](runs)


if __name__ == "__main__":
    main(sys.argv[1:])
