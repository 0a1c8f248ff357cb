"""Fault figures for docs/reliability.md: how fast a killed worker is noticed, how long a server restart interrupts the
stream, and whether anything was lost or stored twice. Real server, real workers, CPU.
Run: `.venv/bin/python bench/faults.py`.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import start_server, wait_for  # noqa: E402


def steps_of(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()["step"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        runs.mkdir()
        server = start_server(runs)

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

        run = server.create(epochs=8)
        wait_for(lambda: server.run(run["id"])["step"] > 10)
        port = int(server.url.rsplit(":", 1)[1])
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
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
        server.stop()


def steps_of_db(runs: Path, run_id: int) -> list[int]:
    import sqlite3

    db = sqlite3.connect(runs / "ganboard.db")
    try:
        return [s for (s,) in db.execute("SELECT step FROM metrics WHERE run_id = ?", (run_id,))]
    finally:
        db.close()


if __name__ == "__main__":
    main()
