"""What the machine sampler (trainer/system.py) costs training: images/s of GANboard's loop without it, with it at its
default interval, and at a 20x shorter one (an upper bound), alternating in one process. Each sample is built into a
SystemMessage and serialised as the worker does before journalling it.

Run: `.venv/bin/python bench/system_cost.py [--device cpu|cuda] [--rounds 3] [--case quick] [--scale 1]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.train_throughput import CASES, WARMUP, ours_images_per_s  # noqa: E402
from trainer.hardware import configure  # noqa: E402
from trainer.protocol import SystemMessage  # noqa: E402
from trainer.system import INTERVAL_SECONDS, Gpu, SystemSampler, pci_bus_id  # noqa: E402


def with_sampler(interval: float | None, device: torch.device, run) -> tuple[float, int]:
    """images/s of `run()` with a sampler every `interval` seconds (None: none), and how many samples it took."""
    if interval is None:
        return run(), 0
    sent: list[str] = []
    gpu = Gpu(bus) if (bus := pci_bus_id(device)) else None
    sampler = SystemSampler(lambda s: sent.append(SystemMessage(seq=1, attempt=1, **s).model_dump_json()), lambda: 0,
                            gpu=gpu, interval=interval).start()  # fmt: skip
    try:
        return run(), len(sent)
    finally:
        sampler.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", default="quick")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the case's timed steps")
    args = parser.parse_args()
    device = torch.device(args.device)
    configure(device)
    cfg, timed = CASES[args.device][args.case]
    cfg = cfg.model_copy(update={"device": args.device})
    steps = max(WARMUP + 2, round(timed * args.scale) + WARMUP + 1)
    shape = (cfg.batch_size * (steps + 1), cfg.channels, cfg.image_size, cfg.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    probe = SystemSampler(lambda s: None, lambda: 0, gpu=Gpu(bus) if (bus := pci_bus_id(device)) else None)
    t0 = time.perf_counter()
    for _ in range(200):
        probe.sample()
    cost = (time.perf_counter() - t0) / 200
    print(f"one sample: {cost * 1e3:.3f} ms of one core, {cost / INTERVAL_SECONDS:.5%} of the default interval")
    intervals = {"off": None, f"every {INTERVAL_SECONDS:g} s": INTERVAL_SECONDS, f"every {INTERVAL_SECONDS / 20:g} s": INTERVAL_SECONDS / 20}
    speeds: dict[str, list[float]] = {name: [] for name in intervals}
    samples: dict[str, int] = dict.fromkeys(intervals, 0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.case} on {where}, {steps} steps, median of {args.rounds} alternating rounds")
    for _ in range(args.rounds):  # alternate, so drifts in machine speed hit all alike
        for name, interval in intervals.items():
            ips, n = with_sampler(interval, device, lambda: ours_images_per_s(cfg, images, steps))
            speeds[name].append(ips)
            samples[name] += n
    base = statistics.median(speeds["off"])
    for name in intervals:
        ips = statistics.median(speeds[name])
        print(f"{name:<14}{ips:>10.1f} img/s  ratio to off {ips / base:.3f}  ({samples[name]} samples; runs {', '.join(f'{v:.0f}' for v in speeds[name])})")


if __name__ == "__main__":
    main()
