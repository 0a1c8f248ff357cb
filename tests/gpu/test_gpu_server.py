"""On the GPU, through the real server and worker processes: a run cancels, resumes and cancels again with every step
stored once; the quick preset's start-up with a cold and a warm emoji cache (printed, not asserted)."""

from __future__ import annotations

import time

import pytest

from tests.gpu.report import show
from tests.harness import TINY, scratch_server, wait_for


@pytest.mark.timeout(900)
def test_a_cuda_run_cancels_resumes_and_stores_every_step_once():
    with scratch_server(GANBOARD_MAX_CONCURRENT="1") as server:
        c = server.client
        rid = c.post("/api/runs", json={"config": {**TINY, "device": "cuda", "epochs": 100_000}}).json()["id"]
        wait_for(lambda: server.run(rid)["step"] > 50, 120, 0.05, "the first steps")
        c.post(f"/api/runs/{rid}/cancel")
        first = server.wait_status(rid, "cancelled", "failed")
        assert show("a CUDA run cancels", first["status"] == "cancelled", f"at step {first['step']}, on {first.get('device')}")
        c.post(f"/api/runs/{rid}/resume")
        wait_for(lambda: server.run(rid)["step"] > first["step"] + 50, 120, 0.05, "steps after the resume")
        c.post(f"/api/runs/{rid}/cancel")
        second = server.wait_status(rid, "cancelled", "failed")
        assert show("it resumes on CUDA and cancels again", second["status"] == "cancelled", second.get("error") or "")
        steps = c.get(f"/api/runs/{rid}/metrics", params={"max_points": 1_000_000}).json()["step"]
        assert show("every step is stored once", steps == list(range(1, len(steps) + 1)), f"{len(steps)} steps")

        for cache in ("cold", "warm"):
            posted = time.perf_counter()
            rid = c.post("/api/runs", json={"config": {"device": "cuda"}}).json()["id"]  # the quick preset as is
            wait_for(lambda: server.run(rid)["step"] > 0, 120, 0.02, "the first batch")
            batch = time.perf_counter()
            wait_for(lambda: c.get(f"/api/runs/{rid}/samples").json(), 120, 0.02, "the first grid")
            grid = time.perf_counter()
            c.post(f"/api/runs/{rid}/cancel")
            server.wait_status(rid, "cancelled", "failed", "completed")
            print(f"     start-up, quick preset, {cache} emoji cache: POST -> first batch {batch - posted:.1f} s, "
                  f"-> first grid {grid - posted:.1f} s", flush=True)  # fmt: skip
