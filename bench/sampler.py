"""The warm sampler (issues 19.7, 20.4): a new seed on a warm sampler, and 40 requests abandoned by their clients.

Starts its own server, trains a TINY run, then: one grid request (cold: the sampler process starts), one with a new
seed (warm), and 40 latent walks of 64 frames whose clients give up after 2 s; prints the times, the sampler
processes seen and the cache's files and bytes.

    .venv/bin/python bench/sampler.py
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import scratch_server  # noqa: E402
from tests.test_sampling_api import samplers  # noqa: E402


def main() -> None:
    with scratch_server() as server:
        run = server.create(epochs=1)
        server.wait_status(run["id"], "completed", timeout=900)
        url = f"/api/runs/{run['id']}/samples/generate"

        def grid(seed: int) -> float:
            started = time.perf_counter()
            r = server.client.post(url, json={"checkpoint": "netg.pth", "seed": seed, "count": 64}, timeout=300)
            assert r.status_code == 200, r.text
            return time.perf_counter() - started

        print(f"first request (the sampler starts): {grid(1):.2f} s")
        warm = [grid(seed) for seed in range(2, 7)]
        print(f"a new seed on the warm sampler: {min(warm):.3f} s best, {sorted(warm)[2]:.3f} s median of 5")
        seen: set[int] = set()

        def abandon(seed: int) -> None:
            try:
                httpx.post(server.url + url, timeout=2.0,
                           json={"checkpoint": "netg.pth", "mode": "walk", "seed": seed, "steps": 64})  # fmt: skip
            except httpx.TimeoutException:
                pass
            seen.update(samplers(server))

        started = time.perf_counter()
        with ThreadPoolExecutor(40) as pool:
            list(pool.map(abandon, range(100, 140)))
        time.sleep(5)
        folder = server.runs_dir / str(run["id"]) / "generated"
        walks = len(list(folder.glob("*.webp")))
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"40 walks abandoned after 2 s: {walks} made, sampler processes seen {len(seen)}, now "
              f"{len(samplers(server))}; cache {len(list(folder.iterdir()))} files, {size / 2**10:.0f} KiB "
              f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
