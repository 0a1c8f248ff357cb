"""What a run scores at the end of an epoch: SWD and diversity every epoch, FID and KID when the time budget allows.

All of it runs off the training thread (trainer/sidework.py), on a snapshot of G. SWD (trainer/quality.py) is cheap and
needs nothing installed, so every epoch has it, on the run's device. FID and KID need Inception features of generated
and real images, which cost seconds to minutes on a CPU: they run while their cost stays within `BUDGET` of the
training time so far, with the last epoch's scoring reserved from it, by a cost model measured on this device on
first use (a timed small batch, then each real scoring), and always at the last epoch; `eval_every` in the config fixes the period instead; `fid: false` turns them
off. The real images' features are computed once per dataset, size and feature resolution, and cached beside the
datasets.

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
from trainer.files import atomic
from trainer.fid import FeaturesUnavailable, InceptionFeatures, frechet_distance, kernel_inception_distance, statistics
from trainer.quality import SlicedWasserstein

log = logging.getLogger(__name__)
BUDGET = 0.10  # FID/KID may cost training at most this share of its time
# (Inception input pixels, images a side): 299 px is the standard FID; 75 px, the smallest Inception-v3 takes, costs
# a sixteenth on a CPU (about 15 ms an image on 2 cores against 240 ms), so CPU runs get a score at all.
FID_SETTINGS = {"cuda": (299, 2048), "cpu": (75, 256)}
PROBE_IMAGES = 8  # the timed small batch of the cost model


class Evaluator:
    def __init__(self, cfg: TrainConfig, images: torch.Tensor, device: torch.device):
        self.cfg, self.images, self.device = cfg, images, device
        self.swd = SlicedWasserstein(images, seed=cfg.seed, device=device)
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[: self.swd.count]
        self.real_spread = spread(images[pick].float().div(127.5).sub(1))
        self.fid_size, self.fid_count = FID_SETTINGS["cuda" if device.type == "cuda" else "cpu"]
        self.noise = torch.randn(max(self.swd.count, self.fid_count), cfg.nz, 1, 1,
                                 generator=torch.Generator().manual_seed(cfg.seed + 1))  # fmt: skip
        self.features: InceptionFeatures | None = None
        self.real: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # features, mean, covariance
        self.unavailable: str | None = None if cfg.fid else "turned off in the run's config (fid: false)"
        self.spent = 0.0  # what FID/KID cost training so far, in seconds of its time (see `_clock`)
        self.per_image: float | None = None  # the cost model: seconds of training time per image scored

    @property
    def fid_at(self) -> str:
        """What the page shows beside FID, since a CPU's 75 px score does not compare with a GPU's 299 px one."""
        return f"{self.fid_size} px, {'GPU' if self.device.type == 'cuda' else 'CPU'}"

    def fid_due(self, epoch: int, train_seconds: float, final: bool) -> bool:
        """Whether epoch `epoch`'s FID/KID should be scored, `train_seconds` into training (the `final` epoch always)."""
        if self.unavailable:
            return False
        if self.cfg.eval_every or final:
            return final or epoch % self.cfg.eval_every == 0
        if self.per_image is None:
            return False
        final_reserve = self.per_image * self.fid_count  # the last epoch's scoring, which always comes, is budgeted too
        return self.spent + self.estimate() + final_reserve <= BUDGET * train_seconds

    def estimate(self) -> float:
        """The next scoring's cost: generated images, and the real ones' too until they are cached."""
        return (self.per_image or 0.0) * self.fid_count * (1 if self.real is not None else 2)

    @torch.no_grad()
    def quick(self, netg: torch.nn.Module) -> dict[str, float]:
        """Every epoch's scores of `netg`: SWD and diversity."""
        fake = self._generate(netg, self.swd.count)
        return {"swd": self.swd(fake), "diversity": spread(fake) / max(self.real_spread, 1e-8)}

    @torch.no_grad()
    def measure(self) -> None:
        """The cost model, on first use: Inception loaded and timed on a small batch (on a CPU on the thread's one
        torch thread). What loading and timing cost is charged to the budget too."""
        if self.unavailable or self.per_image is not None:
            return
        start = self._clock()
        try:
            self.features = self.features or InceptionFeatures(self.device, self.fid_size)
        except FeaturesUnavailable as e:
            self.unavailable = str(e)
            log.warning("FID and KID are off: %s", e)
            return
        probe = torch.zeros(PROBE_IMAGES, 3, self.cfg.image_size, self.cfg.image_size)
        self.features(probe[:1])  # the first call pays for lazy initialisation
        clock = self._clock()
        self.features(probe)
        self.per_image = self._since(clock) / PROBE_IMAGES
        self.spent += self._since(start)
        log.info("FID/KID cost model: %.1f ms of training time per image", 1e3 * self.per_image)

    @torch.no_grad()
    def fid(self, netg: torch.nn.Module) -> dict[str, float | str]:
        """FID, KID and `fid_at` of `netg`; {} when they cannot be computed (the reason is logged once)."""
        self.measure()
        if self.unavailable:
            return {}
        start = self._clock()
        if self.real is None:
            real = self._real_features()
            self.real = (real, *statistics(real))
        real, mu, sigma = self.real
        clock = self._clock()
        feats = self.features(self._generate(netg, self.fid_count))
        self.per_image = self._since(clock) / self.fid_count
        scores = {
            "fid": frechet_distance(mu, sigma, *statistics(feats)),
            "kid": kernel_inception_distance(real, feats, seed=self.cfg.seed),
            "fid_at": self.fid_at,
        }
        self.spent += self._since(start)
        return scores

    def _clock(self) -> float:
        """On a GPU, FID costs training its wall time (they share the GPU); on a CPU, the scoring thread's CPU time,
        whole: training's threads meet at the end of every op, so a core's time taken from one of them is lost to all
        of them. (Spread over the cores instead, FID cost quick-preset runs 14% against the 10% promised, measured
        by `bench/run_efficiency.py --fid-pairs`; docs/quality.md.)"""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.thread_time()

    def _since(self, clock: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter() - clock
        return time.thread_time() - clock

    def _generate(self, netg: torch.nn.Module, count: int) -> torch.Tensor:
        """G in training mode, as for the sample grid; the same chunks every time (BatchNorm uses batch statistics)."""
        chunks = [netg(z.to(self.device)).float() for z in self.noise[:count].split(256)]
        return torch.cat(chunks).clamp(-1, 1)

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
            with atomic(path, unique=True) as tmp:
                torch.save(real, tmp)
        except OSError as e:
            log.warning("could not cache the real images' features in %s: %s", path.parent, e)
        return real


def spread(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance of images in [-1, 1], average-pooled to 8x8 (see the module's docstring)."""
    x = torch.nn.functional.adaptive_avg_pool2d(images.float(), 8).flatten(1)
    n = len(x)
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))
