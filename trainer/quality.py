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


def _positions(shape: torch.Size, per_image: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of `per_image` random 7x7 neighbourhoods in every image of a level of `shape`."""
    n, _, h, w = shape
    y = torch.randint(h - PATCH + 1, (n, per_image, 1, 1), generator=generator) + torch.arange(PATCH)[:, None]
    x = torch.randint(w - PATCH + 1, (n, per_image, 1, 1), generator=generator) + torch.arange(PATCH)[None, :]
    return y, x


def _descriptors(level: torch.Tensor, at: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The neighbourhoods `at` of every image, flattened, normalised per channel."""
    n, c = level.shape[:2]
    y, x = at
    desc = level.permute(0, 2, 3, 1)[torch.arange(n, device=level.device)[:, None, None, None], y, x]
    desc = desc.reshape(-1, PATCH * PATCH, c)
    mean, std = desc.mean(dim=(0, 1), keepdim=True), desc.std(dim=(0, 1), keepdim=True)
    return ((desc - mean) / (std + 1e-8)).reshape(len(desc), -1)


def _sorted_projections(desc: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(directions, points): sorting along the contiguous axis is fast."""
    return torch.sort((desc @ directions).T, dim=1)[0]


class SlicedWasserstein:
    """SWD of generated batches against a fixed sample of the real images; build once per run, call every epoch. On
    `device`: on a GPU it is a few small matrix products and sorts, off the CPU that the data loading needs.

    Every call takes its patches at the same positions and projects on the same directions (drawn once, here), so
    scores compare from epoch to epoch, and the real side's sorted projections are computed once: a call sorts only
    the generated side."""

    def __init__(self, real_uint8: torch.Tensor, count: int = 128, per_image: int = 32, directions: int = 64,
                 seed: int = 0, device: torch.device | str = "cpu"):  # fmt: skip
        self.device = torch.device(device)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(real_uint8), generator=gen)[:count]
        real = laplacian_pyramid(real_uint8[pick].to(self.device).float().div(127.5).sub(1))
        self.count = len(real[0])
        real_at = [self._on_device(_positions(level.shape, per_image, gen)) for level in real]
        gen = torch.Generator().manual_seed(seed + 1)  # the positions first, then a level's directions, as drawn
        self.at = [self._on_device(_positions(level.shape, per_image, gen)) for level in real]
        self.directions = []
        for level in real:
            d = torch.randn(PATCH * PATCH * level.shape[1], directions, generator=gen)
            self.directions.append((d / d.norm(dim=0, keepdim=True)).to(self.device))
        self.real = [_sorted_projections(_descriptors(level, at), d)
                     for level, at, d in zip(real, real_at, self.directions)]  # fmt: skip

    def _on_device(self, at: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return at[0].to(self.device), at[1].to(self.device)  # drawn on the CPU: a GPU scores what a CPU would

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor) -> float:
        """`fake` in [-1, 1], at least as many images as the real sample (extra ones are ignored)."""
        if len(fake) < self.count:
            raise ValueError(f"SWD needs {self.count} generated images, got {len(fake)}")
        levels = laplacian_pyramid(fake[: self.count].detach().float().to(self.device))
        scores = [(_sorted_projections(_descriptors(level, at), d) - real).abs().mean().item()
                  for level, at, d, real in zip(levels, self.at, self.directions, self.real)]  # fmt: skip
        return 1e3 * sum(scores) / len(scores)
