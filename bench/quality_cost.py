"""What the per-epoch sample-quality score costs: one SWD evaluation against one epoch of the quick preset.

Alternates, in one process, a one-epoch quick-preset run (its training time from the epoch's images/s) with one SWD
evaluation of a generator of that preset (the evaluator's own work at an epoch's end: generate 128 images, describe,
project, sort), and prints the median ratio. The issue's budget: under 5% of an epoch on this CPU.
Run: `.venv/bin/python bench/quality_cost.py [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import load_images  # noqa: E402
from trainer.evaluate import Evaluator  # noqa: E402
from trainer.hardware import configure  # noqa: E402
from trainer.loop import train  # noqa: E402
from trainer.models import build_generator  # noqa: E402


class EpochSpeed:
    """A sink that keeps the epoch's training speed and its number of batches."""

    images_per_s, batches = 0.0, 0

    def on_batch(self, rows) -> None:
        pass

    def on_epoch(self, info) -> None:
        self.images_per_s = info["images_per_s"]

    def on_score(self, info):
        pass

    def on_stopping(self, step):
        pass

    def on_status(self, status, **info) -> None:
        self.batches = info.get("batches_per_epoch", self.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cfg = TrainConfig.preset("quick", epochs=1, device="cpu")
    configure(torch.device("cpu"))
    evaluator = Evaluator(cfg, load_images(cfg, log=print), torch.device("cpu"))
    netg = build_generator(cfg).train()
    epochs, swd = [], []
    for _ in range(args.rounds):
        sink = EpochSpeed()
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, Path(tmp), sink)
        epochs.append(sink.batches * cfg.batch_size / sink.images_per_s)
        t0 = time.perf_counter()
        evaluator(netg, 1, train_seconds=0.0)  # no training time yet: SWD only, as on most epochs
        swd.append(time.perf_counter() - t0)
    epoch, cost = statistics.median(epochs), statistics.median(swd)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} alternating rounds")
    print(f"quick-preset epoch {epoch * 1000:.0f} ms, SWD {cost * 1000:.0f} ms: {100 * cost / epoch:.1f}% of an epoch")


if __name__ == "__main__":
    main()
