"""The exports of a long run through a real server: how much the server's memory grows and how soon the first byte comes.

A completed run of `--steps` rows (1,000,000 by default) is written straight into a SQLite file (tests/browser/
runs_in_db.py), a server is started on it, and each export is read to its end, one after the other: the server's peak
RSS over its RSS before the request (VmHWM, reset through /proc/<pid>/clear_refs before each), the time to the first
byte of the body and to the last, and the bytes. `--runs DIR` keeps the runs folder (made once, reused: run the script
of another checkout on the same folder to compare).
Run: `.venv/bin/python bench/exports.py [--steps 1000000] [--runs /tmp/bench-exports] [--only tensorboard.zip]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from tests.browser.runs_in_db import write_run  # noqa: E402
from tests.harness import start_server  # noqa: E402

EXPORTS = {
    "metrics?max_points=2000": "/api/runs/{id}/metrics?max_points=2000",
    "metrics.csv": "/api/runs/{id}/export/metrics.csv",
    "metrics.json": "/api/runs/{id}/export/metrics.json",
    "tensorboard.zip": "/api/runs/{id}/export/tensorboard.zip",
}


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(client: httpx.Client, pid: int, url: str, timeout: float) -> str:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = kib(pid, "VmRSS")
    started = time.perf_counter()
    first, size = None, 0
    with client.stream("GET", url, timeout=timeout) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            first = first or time.perf_counter() - started
            size += len(chunk)
    took = time.perf_counter() - started
    grew = (kib(pid, "VmHWM") - before) / 1024
    return f"peak RSS +{grew:,.0f} MiB, first byte {first:.2f} s, last {took:.2f} s, {size / 2**20:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--only", action="append", choices=list(EXPORTS))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp) / "runs"
        if not (runs / "ganboard.db").exists():
            runs.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            write_run(runs, args.steps)
            print(f"a run of {args.steps:,} steps written in {time.perf_counter() - started:.0f} s", flush=True)
        server = start_server(runs)
        try:
            (run,) = server.client.get("/api/runs").json()
            print(f"run {run['id']}: {run['step']:,} steps; server RSS {kib(server.proc.pid, 'VmRSS') / 1024:,.0f} MiB")
            for name, url in EXPORTS.items():
                if not args.only or name in args.only:
                    print(f"{name}: {measure(server.client, server.proc.pid, url.format(id=run['id']), args.timeout)}",
                          flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
