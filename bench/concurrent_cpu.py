"""Concurrent CPU runs: two runs training at once, against one run alone, on one server that allows two.

The CPU workers running share the cores as torch threads (`cpu_share` in app/runs/supervisor.py): a run alone trains with
every core, two at once with half each, told as they start and end. Each round trains one run alone, then two at once,
and the script prints each run's images/s and the two runs' sum against the one alone: above 1, two at once get more
done than one after the other. Run: `.venv/bin/python bench/concurrent_cpu.py [--steps 300] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import Server, scratch_server  # noqa: E402


def train_at_once(server: Server, runs: int, steps: int) -> list[float]:
    """images/s of each of `runs` quick-preset runs started together."""
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
    with scratch_server(GANBOARD_MAX_CONCURRENT="2") as server:
        for _ in range(args.rounds):
            alone.append(train_at_once(server, 1, args.steps)[0])
            together.append(train_at_once(server, 2, args.steps))
    a = statistics.median(alone)
    both = statistics.median(sum(pair) for pair in together)
    print(f"{args.steps} steps, median of {args.rounds} alternating rounds, on a server that allows two at once:")
    print("  one alone: " + ", ".join(f"{v:.0f}" for v in alone) + " images/s")
    print("  two at once: " + "; ".join(" + ".join(f"{v:.0f}" for v in pair) + " images/s" for pair in together))
    print(f"  two at once together: {both:.0f} images/s against {a:.0f} for one alone: ratio {both / a:.2f}")


if __name__ == "__main__":
    main()
