"""What bench/sweep_12.py and bench/sweep_optuna.py share: a sweep run to its end through a real scratch server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.harness import Server, scratch_server, wait_for

LONGEST = 6 * 3600  # seconds: a quick-preset sweep on this loaded CPU takes hours


@contextmanager
def finished_sweep(spec: dict, concurrent: str = "1") -> Iterator[tuple[Server, dict, float]]:
    """(the server, the sweep as `GET /api/sweeps/<id>` gives it once no longer active, its wall seconds), on a scratch
    server with GANBOARD_MAX_CONCURRENT=`concurrent`. Prints the runs' counts by status as they change."""
    with scratch_server(GANBOARD_MAX_CONCURRENT=concurrent) as server:
        t0 = time.monotonic()
        r = server.client.post("/api/sweeps", json=spec)
        if r.status_code != 201:
            raise SystemExit(f"POST /api/sweeps: {r.status_code} {r.text}")
        url = f"/api/sweeps/{r.json()['id']}"
        seen: list[dict] = []

        def ended() -> dict | None:
            sweep = server.client.get(url).json()
            if not seen or sweep["counts"] != seen[-1]:
                seen.append(sweep["counts"])
                print(f"  {(time.monotonic() - t0) / 60:5.1f} min: {sweep['counts']}", flush=True)
            return sweep if sweep["status"] != "active" else None

        done = wait_for(ended, LONGEST, 5, "the sweep")
        yield server, done, time.monotonic() - t0
