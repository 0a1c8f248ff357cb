"""What a run scores at the end of an epoch: SWD every epoch, FID and KID when the time budget allows.

SWD (trainer/quality.py) is cheap and needs nothing installed, so every epoch has it. FID and KID need Inception
features of generated and real images, which cost seconds on a CPU: by default they run only while evaluation stays
within `BUDGET` of the training time so far (so every epoch or few on a GPU, every few dozen epochs on a CPU, and never
in a run of seconds); `eval_every` in the config fixes the period instead (and adds the last epoch). The real images' features are computed once per dataset,
size and feature resolution, and cached beside the datasets.

Diversity is the mean pairwise distance of the generated images divided by the same of as many real ones, both
average-pooled to 8x8 pixels: at that size what is left is an image's layout and colours, the thing a collapsed G
repeats, while the high-frequency noise an untrained or broken G adds (which would pass for variety in full pixels)
is averaged away. It costs one small matrix of distances, so every epoch has it: about 1 for a healthy G, near 0
when G draws one image for every noise.

Generated images come from a noise batch of their own generator, so scoring never touches the training RNG.
"""

from __future__ import annotations

import hashlib
import logging
import time

import torch

from trainer.config import TrainConfig
from trainer.data import cache_dir
from trainer.fid import FeaturesUnavailable, InceptionFeatures, frechet_distance, kernel_inception_distance, statistics
from trainer.quality import SlicedWasserstein

log = logging.getLogger(__name__)
BUDGET = 0.10  # evaluation may take at most this share of the training time
# (Inception input pixels, images a side): 299 px is the standard FID; 75 px, the smallest Inception-v3 takes, costs
# a sixteenth on a CPU (about 15 ms an image on 2 cores against 240 ms), so CPU runs get a score at all.
FID_SETTINGS = {"cuda": (299, 2048), "cpu": (75, 256)}


class Evaluator:
    def __init__(self, cfg: TrainConfig, images: torch.Tensor, device: torch.device):
        self.cfg, self.images, self.device = cfg, images, device
        self.swd = SlicedWasserstein(images, seed=cfg.seed)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[: self.swd.count]
        self.real_spread = spread(images[pick].float().div(127.5).sub(1))
        self.fid_size, self.fid_count = FID_SETTINGS["cuda" if device.type == "cuda" else "cpu"]
        self.noise = torch.randn(max(self.swd.count, self.fid_count), cfg.nz, 1, 1,
                                 generator=torch.Generator().manual_seed(cfg.seed + 1))  # fmt: skip
        self.features: InceptionFeatures | None = None
        self.real: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # features, mean, covariance
        self.unavailable: str | None = None
        self.spent = 0.0  # seconds of FID/KID so far
        self.last_cost: float | None = None

    @property
    def label(self) -> str:
        return f"FID at {self.fid_size} px, {self.fid_count} images a side"

    @property
    def fid_at(self) -> str:
        """What the page shows beside FID, since a CPU's 75 px score does not compare with a GPU's 299 px one."""
        return f"{self.fid_size} px, {'GPU' if self.device.type == 'cuda' else 'CPU'}"

    def fid_due(self, epoch: int, train_seconds: float) -> bool:
        if self.unavailable:
            return False
        if self.cfg.eval_every:
            return epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs
        cost = self.last_cost if self.last_cost is not None else self.fid_count * 0.03  # a CPU guess until measured
        return self.spent + cost <= BUDGET * train_seconds

    @torch.no_grad()
    def __call__(self, netg: torch.nn.Module, epoch: int, train_seconds: float) -> dict[str, float | str]:
        """Scores of `netg` now: always `swd`; `fid`, `kid` and `fid_at` when due. `train_seconds`: training time so
        far."""
        fake = self._generate(netg, self.swd.count)
        scores = {"swd": self.swd(fake), "diversity": spread(fake) / max(self.real_spread, 1e-8)}
        if self.fid_due(epoch, train_seconds):
            t0 = time.perf_counter()
            try:
                scores.update(self._fid(self._generate(netg, self.fid_count)))
            except FeaturesUnavailable as e:
                self.unavailable = str(e)
                log.warning("FID and KID are off: %s", e)
            self.last_cost = time.perf_counter() - t0
            self.spent += self.last_cost
        return scores

    def _generate(self, netg: torch.nn.Module, count: int) -> torch.Tensor:
        """G in training mode, as for the sample grid; the same chunks every time (BatchNorm uses batch statistics)."""
        chunks = [netg(z.to(self.device)).float().cpu() for z in self.noise[:count].split(256)]
        return torch.cat(chunks).clamp(-1, 1)

    def _fid(self, fake: torch.Tensor) -> dict[str, float | str]:
        if self.features is None:
            self.features = InceptionFeatures(self.device, self.fid_size)
        if self.real is None:
            real = self._real_features()
            self.real = (real, *statistics(real))
        real, mu, sigma = self.real
        feats = self.features(fake)
        return {
            "fid": frechet_distance(mu, sigma, *statistics(feats)),
            "kid": kernel_inception_distance(real, feats, seed=self.cfg.seed),
            "fid_at": self.fid_at,
        }

    def _real_features(self) -> torch.Tensor:
        """Features of a fixed sample of the training images, cached per dataset, size and feature resolution."""
        cfg = self.cfg
        source = f"{cfg.dataset}:{cfg.data_path or ''}:{cfg.image_size}:{cfg.channels}:{cfg.seed}"
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = cache_dir() / f"fid_{cfg.dataset}_{cfg.image_size}px_{key}_{self.fid_size}_{self.fid_count}.pt"
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # missing or damaged: computed again
            pass
        pick = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(cfg.seed))[: self.fid_count]
        real = self.features(self.images[pick].float().div(127.5).sub(1))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{time.time_ns()}.tmp")
            torch.save(real, tmp)
            tmp.replace(path)
        except OSError as e:
            log.warning("could not cache the real images' features in %s: %s", path.parent, e)
        return real


def spread(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance of images in [-1, 1], average-pooled to 8x8 (see the module's docstring)."""
    x = torch.nn.functional.adaptive_avg_pool2d(images.float(), 8).flatten(1)
    n = len(x)
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))
