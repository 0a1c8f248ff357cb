"""Training throughput: GANboard's trainer against a faithful re-implementation of the article's loop.

Both train on the same random images with the same config, alternating, for several rounds; the script prints images/s
of each and the ratio to the article's loop measured in the same process. Run: `make bench` or
`.venv/bin/python bench/train_throughput.py [--rounds 3] [--scale 1] [--cases article-b64,quick]`.

The article's loop, as written there: NetD ends in Sigmoid with BCELoss; D steps on real then on `netg(noise).detach()`
(the generator forward keeps its graph); G steps with BCE against ones; fp32, default memory format.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trainer.loop as loop  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.models import build_discriminator, build_generator  # noqa: E402

WARMUP = 3  # steps left out of every timing


def article_images_per_s(cfg: TrainConfig, images: torch.Tensor, steps: int) -> float:
    """The article's main.py inner loop, on pre-decoded data (so data loading costs neither side anything)."""
    netg, netd_logits = build_generator(cfg), build_discriminator(cfg)
    netd = nn.Sequential(netd_logits, nn.Sigmoid())
    opt_g = torch.optim.Adam(netg.parameters(), cfg.lr_g, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(netd.parameters(), cfg.lr_d, betas=(cfg.beta1, 0.999))
    criterion = nn.BCELoss()
    bs = cfg.batch_size
    true_labels, fake_labels = torch.ones(bs), torch.zeros(bs)
    noises = torch.randn(bs, cfg.nz, 1, 1)
    data = images.float().div(127.5).sub(1)
    stamps = []
    for ii in range(steps):
        real_img = data[(ii * bs) % (len(data) - bs) :][:bs]
        if ii % cfg.d_every == 0:
            opt_d.zero_grad()
            error_d_real = criterion(netd(real_img), true_labels)
            error_d_real.backward()
            noises.data.copy_(torch.randn(bs, cfg.nz, 1, 1))
            fake_img = netg(noises).detach()
            error_d_fake = criterion(netd(fake_img), fake_labels)
            error_d_fake.backward()
            opt_d.step()
        if ii % cfg.g_every == 0:
            opt_g.zero_grad()
            noises.data.copy_(torch.randn(bs, cfg.nz, 1, 1))
            error_g = criterion(netd(netg(noises)), true_labels)
            error_g.backward()
            opt_g.step()
        stamps.append(time.perf_counter())
    return bs * (steps - 1 - WARMUP) / (stamps[-1] - stamps[WARMUP])


class _Stamps:
    """A sink that keeps the wall time of every batch."""

    def __init__(self):
        self.times: list[float] = []

    def on_batch(self, rows):
        self.times += rows["time"]

    def on_epoch(self, info):
        pass

    def on_status(self, status, **info):
        pass


def ours_images_per_s(cfg: TrainConfig, images: torch.Tensor, steps: int) -> float:
    loop.load_images = lambda cfg, log=None: images  # the same random data as the article's loop
    sink = _Stamps()
    with tempfile.TemporaryDirectory() as run_dir:
        loop.train(cfg.model_copy(update={"max_steps": steps}), Path(run_dir), sink)
    t = sink.times
    return cfg.batch_size * (len(t) - 1 - WARMUP) / (t[-1] - t[WARMUP])


# (config, timed steps): about ten seconds of training per measurement on 2 CPU cores
CASES = {
    "article-b64": (TrainConfig.preset("article", batch_size=64, device="cpu"), 12),
    "article-b256": (TrainConfig.preset("article", device="cpu"), 4),
    "quick": (TrainConfig.preset("quick", device="cpu"), 120),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's timed steps")
    parser.add_argument("--cases", default="article-b64,quick", help=f"comma list of {', '.join(CASES)}")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; median of {args.rounds} alternating rounds")
    print(f"{'case':<14}{'article img/s':>14}{'ours fp32':>11}{'ratio':>7}{'ours bf16':>11}{'ratio':>7}")
    for name in args.cases.split(","):
        cfg, timed = CASES[name]
        torch.manual_seed(0)
        steps = max(2, round(timed * args.scale)) + WARMUP + 1
        # one epoch longer than the measurement, so no sample grid or checkpoint falls inside it
        shape = (cfg.batch_size * (steps + 1), cfg.channels, cfg.image_size, cfg.image_size)
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
        art, fp32, bf16 = [], [], []
        for _ in range(args.rounds):  # alternate, so drifts in machine speed hit all three alike
            art.append(article_images_per_s(cfg, images, steps))
            fp32.append(ours_images_per_s(cfg.model_copy(update={"bf16": False}), images, steps))
            bf16.append(ours_images_per_s(cfg.model_copy(update={"bf16": True}), images, steps))
        a, f, b = (statistics.median(v) for v in (art, fp32, bf16))
        print(f"{name:<14}{a:>14.1f}{f:>11.1f}{f / a:>7.2f}{b:>11.1f}{b / a:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
