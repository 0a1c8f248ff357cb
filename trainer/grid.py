"""The sample grid: a batch of images as one picture, made on the device (the epoch's grid, the sampler's)."""

from __future__ import annotations

import torch


def grid_image(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Images in [-1, 1] as one uint8 [H, W, 3] grid, pixel for pixel what torchvision's
    save_image(images, nrow=8, normalize=True, value_range=(-1, 1)) writes (black 2px gaps), made on the device."""
    n, c, h, w = images.shape
    cols, rows = min(nrow, n), -(-n // min(nrow, n))
    x = images.expand(-1, 3, -1, -1) if c == 1 else images
    x = x.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    x = torch.nn.functional.pad(x, (0, padding, 0, padding))  # a gap right of and below each image
    x = torch.cat([x, x.new_zeros(rows * cols - n, *x.shape[1:])])  # an incomplete last row
    x = x.view(rows, cols, 3, h + padding, w + padding).permute(0, 3, 1, 4, 2).reshape(rows * (h + padding), -1, 3)
    return torch.nn.functional.pad(x, (0, 0, padding, 0, padding, 0))  # and the gaps above and left of the first
