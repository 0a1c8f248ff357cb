"""Sample quality without labels or downloads: the multi-scale sliced Wasserstein distance (SWD) between generated
and real images, as in Karras et al. 2018, "Progressive Growing of GANs", section 5.

Each image is split into a Laplacian pyramid (from its full size down to 16x16); at every level, 7x7 neighbourhoods
taken at random positions become descriptors, normalised per colour channel; the distance between the real and the
generated descriptor sets is the mean, over random unit directions, of the 1-D Wasserstein distance of their
projections (sorted projections, compared rank by rank). Lower is better; identical distributions score about 0.
It is reported averaged over the levels and multiplied by 1e3, as the paper does.

The real side is computed once per run from a fixed subset of the training images, so an epoch pays only for its
generated batch: a few tens of milliseconds at 32x32 on a CPU (bench/quality_cost.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH = 7
MIN_SIZE = 16
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def laplacian_pyramid(x: torch.Tensor, min_size: int = MIN_SIZE) -> list[torch.Tensor]:
    """Band-pass levels from the finest down, and the low-pass residual of `min_size` pixels last."""
    levels = []
    while x.shape[-1] > min_size:
        small = _blur(x)[..., ::2, ::2]
        up = F.interpolate(small, scale_factor=2, mode="nearest")
        levels.append(x - _blur(up))
        x = small
    levels.append(x)
    return levels


def _descriptors(level: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """`per_image` random 7x7 neighbourhoods of every image, flattened, normalised per channel."""
    n, c, h, w = level.shape
    y = torch.randint(h - PATCH + 1, (n, per_image, 1, 1), generator=generator) + torch.arange(PATCH)[:, None]
    x = torch.randint(w - PATCH + 1, (n, per_image, 1, 1), generator=generator) + torch.arange(PATCH)[None, :]
    at = level.device  # the positions are drawn on the CPU generator, so a GPU scores exactly what a CPU would
    desc = level.permute(0, 2, 3, 1)[torch.arange(n, device=at)[:, None, None, None], y.to(at), x.to(at)]
    desc = desc.reshape(n * per_image, PATCH * PATCH, c)
    mean, std = desc.mean(dim=(0, 1), keepdim=True), desc.std(dim=(0, 1), keepdim=True)
    return ((desc - mean) / (std + 1e-8)).reshape(n * per_image, -1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int, generator: torch.Generator) -> float:
    """Mean 1-D Wasserstein distance of the projections of two equally sized descriptor sets."""
    d = torch.randn(a.shape[1], directions, generator=generator).to(a.device)
    d /= d.norm(dim=0, keepdim=True)
    pa, _ = torch.sort((a @ d).T, dim=1)  # (directions, points): sorting along the contiguous axis is fast
    pb, _ = torch.sort((b @ d).T, dim=1)
    return (pa - pb).abs().mean().item()


class SlicedWasserstein:
    """SWD of generated batches against a fixed sample of the real images; build once per run, call every epoch. On
    `device`: on a GPU it is a few small matrix products and sorts, off the CPU that the data loading needs."""

    def __init__(self, real_uint8: torch.Tensor, count: int = 128, per_image: int = 32, directions: int = 64,
                 seed: int = 0, device: torch.device | str = "cpu"):  # fmt: skip
        self.per_image, self.directions, self.seed, self.device = per_image, directions, seed, torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(real_uint8), generator=gen)[:count]
        real = real_uint8[pick].to(self.device).float().div(127.5).sub(1)
        self.count = len(real)
        self.real = self._describe(real, gen)

    def _describe(self, images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        return [_descriptors(level, self.per_image, gen) for level in laplacian_pyramid(images)]

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor) -> float:
        """`fake` in [-1, 1], at least as many images as the real sample (extra ones are ignored)."""
        if len(fake) < self.count:
            raise ValueError(f"SWD needs {self.count} generated images, got {len(fake)}")
        gen = torch.Generator().manual_seed(self.seed + 1)  # the same directions every epoch: scores compare
        levels = self._describe(fake[: self.count].detach().float().to(self.device), gen)
        scores = [sliced_wasserstein(r, f, self.directions, gen) for r, f in zip(self.real, levels)]
        return 1e3 * sum(scores) / len(scores)
