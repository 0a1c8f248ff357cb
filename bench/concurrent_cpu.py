"""Concurrent CPU runs: two runs training at once on one server, against one run alone.

The CPU workers running share the cores as torch threads (`cpu_share` in app/supervisor.py): two at once get half
each. Each round trains one run alone on a server that allows one (all cores), then two at once on a
server that allows two, and the script prints each run's images/s and the two runs' sum against the one alone: above 1,
two at once get more done than one after the other. Run: `.venv/bin/python bench/concurrent_cpu.py [--steps 300]
[--rounds 2]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import scratch_server  # noqa: E402


def train_at_once(runs: int, steps: int) -> list[float]:
    """images/s of each of `runs` quick-preset runs started together on a server that allows that many."""
    with scratch_server(GANBOARD_MAX_CONCURRENT=str(runs)) as server:
        config = {"device": "cpu", "epochs": 1000, "max_steps": steps}  # the quick preset
        ids = [server.client.post("/api/runs", json={"config": config}).json()["id"] for _ in range(runs)]
        for run_id in ids:
            done = server.wait_status(run_id, "completed", "failed", timeout=1800)
            assert done["status"] == "completed", done["error"]
        return [server.images_per_s(run_id) for run_id in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    alone, together = [], []
    for _ in range(args.rounds):
        alone.append(train_at_once(1, args.steps)[0])
        together.append(train_at_once(2, args.steps))
    a = statistics.median(alone)
    both = statistics.median(sum(pair) for pair in together)
    print(f"{args.steps} steps, median of {args.rounds} alternating rounds:")
    print("  two at once: " + "; ".join(" + ".join(f"{v:.0f}" for v in pair) + " images/s" for pair in together))
    print(f"  one alone: {a:.0f} images/s; two at once together: {both:.0f} images/s: ratio {both / a:.2f}")


if __name__ == "__main__":
    main()
