"""The issue's Optuna figure: a study of 8 trials over one learning rate for G and D (1e-4..0.05, log scale), TPE with
the median pruner, whose second trial is a setting chosen to fail (lr 0.05), through a real server on this machine.
Prints each trial's learning rate, how it ended, the epochs it trained and its best SWD (a pruned one's reason), and
how many trials the pruner stopped early.
Run: `.venv/bin/python bench/sweep_optuna.py [--epochs 3] [--tiny]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sweep_server import finished_sweep  # noqa: E402
from tests.harness import TINY  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny config instead of the quick preset")
    args = parser.parse_args()
    base = {**(TINY if args.tiny else {"device": "cpu"}), "epochs": args.epochs}
    spec = {"name": "tpe", "method": "optuna", "trials": 8, "parallel": 1, "base": base,
            "axes": {"lr_g+lr_d": {"min": 1e-4, "max": 0.05, "log": True}},
            "first": [{"lr_g+lr_d": 2e-4}, {"lr_g+lr_d": 0.05}], "pruning": {"startup_trials": 1}}  # fmt: skip
    with finished_sweep(spec) as (_, done, wall):
        for run in done["runs"]:
            best = "-" if run["best_swd"] is None else f"{run['best_swd']:.1f}"
            why = f" ({run['error']})" if run["status"] == "pruned" else ""
            print(f"  #{run['id']} lr {run['settings']['lr_g+lr_d']:.2e}: {run['status']} after {len(run['scores'])} of "
                  f"{args.epochs} epochs, best SWD {best}{why}")  # fmt: skip
        early = sum(r["status"] == "pruned" and len(r["scores"]) < args.epochs for r in done["runs"])
        print(f"study: {done['counts']} in {wall / 60:.1f} min; stopped early by the pruner: {early}")


if __name__ == "__main__":
    main()
