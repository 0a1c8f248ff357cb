"""Fan-out: 100 page websockets on one training run, against the same run with no page open.

For each round it trains the same short run twice on a real server, once with no page open and once with `--pages`
pages reading `WS /ws/runs/<id>` (plus one page that never reads), alternating. It prints whether every reading page
received every step, the p50 and p99 delay from the loop recording a step to a page receiving it (this includes the
~250 ms the worker gathers rows before sending), training images/s without and with the pages (a ratio), and the
server process's CPU seconds per training step without and with the pages, and the reading pages' own (they run in this
process, on the same cores as the trainer): on a busy shared machine the images/s ratio swings with the neighbours'
load, while the CPU times show what the fan-out costs and where.
Run: `.venv/bin/python bench/fanout.py [--pages 100] [--steps 600] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import page_messages, scratch_server  # noqa: E402

CONFIG = dict(dataset="procedural", image_size=32, ngf=16, ndf=16, nz=32, batch_size=64, epochs=1000, device="cpu")


async def read_page(url: str, received: dict[int, float], done: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        while not done.is_set():
            try:
                messages = page_messages(await asyncio.wait_for(ws.recv(), 1))
            except TimeoutError:
                continue
            now = time.time()
            for msg in messages:
                rows = msg.get("rows") or msg.get("metrics")
                for step in rows["step"] if rows else []:
                    received.setdefault(step, now)
                if msg["type"] in ("run", "snapshot") and msg["run"]["status"] in ("completed", "failed", "cancelled"):
                    return


def silent_page(host: str, port: int, path: str) -> socket.socket:
    """A page that opens its websocket and then never reads a byte."""
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_once(server, steps: int, pages: int) -> dict:
    cpu_before = cpu_seconds(server.proc.pid)
    pages_before = cpu_seconds(os.getpid())  # the reading pages run in this process
    run = server.client.post("/api/runs", json={"config": {**CONFIG, "max_steps": steps}}).json()
    url = f"{server.ws_url}/ws/runs/{run['id']}"
    received: list[dict[int, float]] = [{} for _ in range(pages)]
    silent = silent_page("127.0.0.1", int(server.url.rsplit(":", 1)[1]), f"/ws/runs/{run['id']}") if pages else None

    async def watch() -> None:
        done = asyncio.Event()
        await asyncio.gather(*(read_page(url, r, done) for r in received))

    thread = threading.Thread(target=lambda: asyncio.run(watch()), daemon=True) if pages else None
    if thread:
        thread.start()
    final = server.wait_status(run["id"], "completed", "failed", timeout=900)
    if thread:
        thread.join(60)
    server_cpu = cpu_seconds(server.proc.pid) - cpu_before
    pages_cpu = cpu_seconds(os.getpid()) - pages_before
    if silent:
        silent.close()
    metrics = server.client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 10**6}).json()
    times = dict(zip(metrics["step"], metrics["time"]))
    result = {"status": final["status"], "images_per_s": server.images_per_s(run["id"]),
              "server_ms_per_step": 1000 * server_cpu / len(times), "pages_ms_per_step": 1000 * pages_cpu / len(times)}  # fmt: skip
    if pages:
        expected = set(times)
        result["complete_pages"] = sum(set(r) == expected for r in received)
        delays = sorted(r[s] - times[s] for r in received for s in r if s in times and s > 1)
        result["p50_ms"] = 1000 * delays[len(delays) // 2]
        result["p99_ms"] = 1000 * delays[int(len(delays) * 0.99)]
        # A batch of rows reaches the pages together: the time until its last page has it, per step read by all.
        everywhere = [max(r[s] for r in received) - times[s] for s in expected - {1} if all(s in r for r in received)]
        result["all_p50_ms"] = 1000 * statistics.median(everywhere) if everywhere else float("nan")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with scratch_server() as server:
        alone, watched = [], []
        for _ in range(args.rounds):
            alone.append(train_once(server, args.steps, 0))
            watched.append(train_once(server, args.steps, args.pages))
    a = statistics.median(r["images_per_s"] for r in alone)
    w = statistics.median(r["images_per_s"] for r in watched)
    print(f"{args.pages} pages (+1 that never reads) on a {args.steps}-step run, {args.rounds} rounds:")
    for r in watched:
        print(f"  every step on {r['complete_pages']}/{args.pages} pages; delay p50 {r['p50_ms']:.0f} ms, "
              f"p99 {r['p99_ms']:.0f} ms; on all {args.pages} p50 {r['all_p50_ms']:.0f} ms; run {r['status']}")  # fmt: skip
    print(f"  training: {a:.0f} images/s with no page, {w:.0f} with {args.pages} pages: ratio {w / a:.2f}")
    ca = statistics.median(r["server_ms_per_step"] for r in alone)
    cw = statistics.median(r["server_ms_per_step"] for r in watched)
    print(f"  server CPU: {ca:.1f} ms per step with no page, {cw:.1f} with {args.pages} pages (+{cw - ca:.1f} ms for the fan-out)")
    pw = statistics.median(r["pages_ms_per_step"] for r in watched)
    print(f"  the {args.pages} reading pages (this process, on the same cores): {pw:.1f} ms of CPU per step")


if __name__ == "__main__":
    main()
