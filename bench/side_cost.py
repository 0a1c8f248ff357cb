"""What scoring beside training costs it on a CPU: the quick preset's step alone, and with a side thread computing
Inception features (FID's work) with one torch thread at nice 0, 10 (trainer/sidework.py's SIDE_NICE) and 19.

Torch is imported before the trainer package here, so OpenMP keeps the wait policy of the environment: run it with
and without `OMP_WAIT_POLICY=PASSIVE` (what a worker uses, trainer/__init__.py) to compare. Alternating rounds in one
process; it prints training's images/s, its ratio to training alone, how many images a second the side thread scored,
and what a second of the side thread's CPU time cost training in seconds of its wall time (`cost/side s`; the FID cost
model, trainer/evaluate.py, counts it as 1/cores). Run: `.venv/bin/python bench/side_cost.py [--rounds 3] [--seconds 8]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

POLICY = os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP's default)")  # before the trainer package sets it

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import TrainConfig  # noqa: E402
from trainer.fid import InceptionFeatures  # noqa: E402
from trainer.state import TrainState  # noqa: E402
from trainer.steps import make_step  # noqa: E402


def side(nice: int, stop: threading.Event, scored: list[int], cpu: list[float]) -> None:
    torch.set_num_threads(1)
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    features = InceptionFeatures("cpu", 75, batch=8)
    images = torch.zeros(8, 3, 32, 32)
    while not stop.is_set():
        features(images)
        scored.append(8)
        cpu.append(time.thread_time())


def train_for(seconds: float, nice: int | None) -> tuple[float, float, float]:
    """(training images/s, side images/s, the side thread's share of a core) over `seconds`, with a side thread at
    `nice` (None: none)."""
    cfg = TrainConfig.preset("quick", device="cpu", bf16=False)
    st = TrainState.build(cfg, torch.device("cpu"))
    step = make_step(st, cfg, nullcontext())
    real = torch.randint(0, 256, (cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    for i in range(3):
        step(i, real)
    stop, scored, cpu = threading.Event(), [], []
    thread = threading.Thread(target=side, args=(nice, stop, scored, cpu)) if nice is not None else None
    if thread:
        thread.start()
        time.sleep(2)  # Inception loaded
        scored.clear()
        cpu.clear()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step(n, real)
        n += 1
    elapsed = time.perf_counter() - start
    stop.set()
    if thread:
        thread.join()
    share = (cpu[-1] - cpu[0]) / elapsed if len(cpu) > 1 else 0.0
    return n * cfg.batch_size / elapsed, sum(scored) / elapsed, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    cases: dict[str, list[tuple[float, float, float]]] = {"alone": [], "nice 0": [], "nice 10": [], "nice 19": []}
    for _ in range(args.rounds):
        for name in cases:
            cases[name].append(train_for(args.seconds, None if name == "alone" else int(name.split()[1])))
    alone = statistics.median(r[0] for r in cases["alone"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY {POLICY}; "
          f"median of {args.rounds} alternating rounds")
    print(f"{'side thread':<12}{'train img/s':>12}{'ratio':>7}{'scored img/s':>14}{'side core':>11}{'cost/side s':>13}")
    for name, results in cases.items():
        train, scored, share = (statistics.median(r[k] for r in results) for k in range(3))
        cost = f"{(1 - train / alone) / share:.2f}" if share else "-"
        print(f"{name:<12}{train:>12.0f}{train / alone:>7.2f}{scored:>14.1f}{share:>11.2f}{cost:>13}")


if __name__ == "__main__":
    main()
