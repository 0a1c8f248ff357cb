"""The issue's sweep figure: 3 learning rates x 2 g_every x 2 seeds of the quick preset, 5 epochs each, through a real
server on this machine. Prints each run's settings, best SWD and time, each setting's mean over its seeds, the wall
time of the whole sweep, and checks that every run stored each of its steps exactly once.
Run: `.venv/bin/python bench/sweep_12.py [--epochs 5] [--concurrent 1]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sweep_server import finished_sweep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--concurrent", default="1", help="GANBOARD_MAX_CONCURRENT")
    args = parser.parse_args()
    spec = {"name": "lr x g_every", "base": {"epochs": args.epochs, "device": "cpu"},
            "axes": {"lr_g+lr_d": {"values": [1e-4, 2e-4, 5e-4]}, "g_every": {"values": [1, 2]}}, "seeds": 2}  # fmt: skip
    with finished_sweep(spec, args.concurrent) as (server, done, wall):
        once = True
        for run in done["runs"]:
            steps = server.client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 10**6}).json()["step"]
            once &= steps == list(range(1, run["total_steps"] + 1))
            best = "-" if run["best_swd"] is None else f"{run['best_swd']:.1f}"
            print(f"  #{run['id']:>2} lr {run['settings']['lr_g+lr_d']:.0e} g_every {run['settings']['g_every']} "
                  f"seed {run['settings']['seed']}: {run['status']}, {run['total_steps']} steps, best SWD "
                  f"{best}, {run['active_seconds'] or 0:.0f} s")  # fmt: skip
        groups: dict[tuple, list[float]] = {}
        for run in (r for r in done["runs"] if r["best_swd"] is not None):  # a failed run has no score
            groups.setdefault((run["settings"]["lr_g+lr_d"], run["settings"]["g_every"]), []).append(run["best_swd"])
        for (lr, g), scores in sorted(groups.items(), key=lambda kv: statistics.mean(kv[1])):
            print(f"  lr {lr:.0e} g_every {g}: best SWD mean {statistics.mean(scores):.1f} ({min(scores):.1f}-{max(scores):.1f})")
        print(f"sweep: {done['counts']} in {wall / 60:.1f} min wall; every run's steps stored once: {once}")


if __name__ == "__main__":
    main()
