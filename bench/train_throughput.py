"""Training throughput: GANboard's trainer against a faithful re-implementation of the article's loop.

Both train on the same random images with the same config, alternating, for several rounds; the script prints images/s
of each and the ratio to the article's loop measured in the same process. Run: `make bench` or
`.venv/bin/python bench/train_throughput.py [--device cpu|cuda] [--rounds 3] [--scale 1] [--cases article-b64,quick]`.

The article's loop, as written there: NetD ends in Sigmoid with BCELoss; D steps on real then on `netg(noise).detach()`
(the generator forward keeps its graph); G steps with BCE against ones; fp32 (TF32 on a GPU, as ours), default memory
format. On a GPU its data is on the GPU already, so it pays nothing for loading either.

On CUDA each of our figures is printed beside the graphed-step ceiling measured for issue 8 (the article's step as two
CUDA graphs, data on the GPU, on an H100; the quick preset's on an H200) and the target ratio the issue sets.
"""

from __future__ import annotations

import argparse
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
from trainer.hardware import configure, uses_bf16  # noqa: E402
from trainer.models import build_discriminator, build_generator  # noqa: E402

WARMUP = 3  # steps left out of every timing

# (config, timed steps): about ten seconds per measurement on 2 CPU cores, a second or two on an H100
CASES = {
    "cpu": {
        "article-b64": (TrainConfig.preset("article", batch_size=64), 12),
        "article-b256": (TrainConfig.preset("article"), 4),
        "quick": (TrainConfig.preset("quick"), 120),
    },
    "cuda": {
        "article-b64": (TrainConfig.preset("article", batch_size=64), 600),
        "article-b256": (TrainConfig.preset("article"), 300),
        "quick": (TrainConfig.preset("quick"), 800),
        "quick-b256": (TrainConfig.preset("quick", batch_size=256), 400),
    },
}
# images/s of the graphed step from issue 8 (fp32, bf16), and the ratio to the article's loop it asks for
CEILING = {"article-b64": (30_900, 36_500), "article-b256": (50_100, 72_000), "quick": (48_000, 45_800),
           "quick-b256": (145_700, None)}  # fmt: skip
TARGET = {"article-b64": 3.0, "article-b256": 2.0, "quick": 5.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def article_images_per_s(cfg: TrainConfig, images: torch.Tensor, steps: int, device: torch.device) -> float:
    """The article's main.py inner loop, on pre-decoded data already on `device` (loading costs neither side)."""
    netg, netd_logits = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    netd = nn.Sequential(netd_logits, nn.Sigmoid())
    opt_g = torch.optim.Adam(netg.parameters(), cfg.lr_g, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(netd.parameters(), cfg.lr_d, betas=(cfg.beta1, 0.999))
    criterion = nn.BCELoss()
    bs = cfg.batch_size
    true_labels, fake_labels = torch.ones(bs, device=device), torch.zeros(bs, device=device)
    noises = torch.randn(bs, cfg.nz, 1, 1, device=device)
    data = images.to(device).float().div(127.5).sub(1)
    for ii in range(steps):
        if ii == WARMUP:
            _sync(device)
            start = time.perf_counter()
        real_img = data[(ii * bs) % (len(data) - bs) :][:bs]
        if ii % cfg.d_every == 0:
            opt_d.zero_grad()
            error_d_real = criterion(netd(real_img), true_labels)
            error_d_real.backward()
            noises.data.copy_(torch.randn(bs, cfg.nz, 1, 1, device=device))
            fake_img = netg(noises).detach()
            error_d_fake = criterion(netd(fake_img), fake_labels)
            error_d_fake.backward()
            opt_d.step()
        if ii % cfg.g_every == 0:
            opt_g.zero_grad()
            noises.data.copy_(torch.randn(bs, cfg.nz, 1, 1, device=device))
            error_g = criterion(netd(netg(noises)), true_labels)
            error_g.backward()
            opt_g.step()
    _sync(device)
    return bs * (steps - WARMUP) / (time.perf_counter() - start)


class _Stamps:
    """A sink that notes when each chunk of batch rows arrives: the loop reads a chunk back from the device just
    before, so on a GPU too the time is when those steps had finished, not when they were queued."""

    def __init__(self):
        self.chunks: list[tuple[int, float]] = []  # (last step in the chunk, time)

    def on_batch(self, rows):
        self.chunks.append((rows["step"][-1], time.perf_counter()))

    def on_epoch(self, info):
        pass

    def on_score(self, info):
        pass

    def on_stopping(self, step):
        pass

    def on_status(self, status, **info):
        pass


def ours_images_per_s(cfg: TrainConfig, images: torch.Tensor, steps: int) -> float:
    loop.load_images = lambda cfg, log=None: images  # the same random data as the article's loop
    sink = _Stamps()
    with tempfile.TemporaryDirectory() as run_dir:
        loop.train(cfg.model_copy(update={"max_steps": steps}), Path(run_dir), sink)
    (s0, t0), (s1, t1) = next(c for c in sink.chunks if c[0] > WARMUP), sink.chunks[-1]
    return cfg.batch_size * (s1 - s0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's timed steps")
    parser.add_argument("--cases", help=f"comma list (default: all but article-b256 on a CPU); {', '.join(CASES['cuda'])}")
    args = parser.parse_args()
    device = torch.device(args.device)
    configure(device)
    cases = CASES[args.device]
    names = args.cases.split(",") if args.cases else [c for c in cases if args.device == "cuda" or c != "article-b256"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}; median of {args.rounds} alternating rounds")
    print(f"{'case':<14}{'article img/s':>14}{'ours fp32':>11}{'ratio':>7}{'ours bf16':>11}{'ratio':>7}{'default':>9}"
          + (f"{'ceiling fp32/bf16':>20}{'target':>8}" if device.type == "cuda" else ""))  # fmt: skip
    for name in names:
        cfg, timed = cases[name]
        cfg = cfg.model_copy(update={"device": args.device})
        torch.manual_seed(0)
        steps = max(WARMUP + 2, round(timed * args.scale) + WARMUP + 1)
        # one epoch longer than the measurement, so no sample grid or checkpoint falls inside it
        shape = (cfg.batch_size * (steps + 1), cfg.channels, cfg.image_size, cfg.image_size)
        images = torch.randint(0, 256, shape, dtype=torch.uint8)
        art, fp32, bf16 = [], [], []
        for _ in range(args.rounds):  # alternate, so drifts in machine speed hit all three alike
            art.append(article_images_per_s(cfg, images, steps, device))
            fp32.append(ours_images_per_s(cfg.model_copy(update={"bf16": False}), images, steps))
            bf16.append(ours_images_per_s(cfg.model_copy(update={"bf16": True}), images, steps))
        a, f, b = (statistics.median(v) for v in (art, fp32, bf16))
        line = f"{name:<14}{a:>14.1f}{f:>11.1f}{f / a:>7.2f}{b:>11.1f}{b / a:>7.2f}{'bf16' if uses_bf16(cfg, device) else 'fp32':>9}"
        if device.type == "cuda":
            ceiling = "/".join(f"{c:,}" if c else "-" for c in CEILING[name])
            line += f"{ceiling:>20}{TARGET[name] if name in TARGET else '-':>8}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
