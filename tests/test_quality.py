"""Sample-quality scores: the math against independent formulas, and the scores order what they should."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from trainer.config import TrainConfig
from trainer.data import load_images
from trainer.fid import FeaturesUnavailable, InceptionFeatures, frechet_distance, kernel_inception_distance, statistics
from trainer.quality import SlicedWasserstein


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return load_images(TrainConfig(dataset="procedural", image_size=32), log=lambda _: None)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The reference formula (TF-FID, pytorch-fid): scipy's sqrtm of the covariance product."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def numpy_kid(f1: np.ndarray, f2: np.ndarray, index_pairs) -> float:
    d, scores = f1.shape[1], []
    for i, j in index_pairs:
        x, y = f1[i], f2[j]
        m = len(x)
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.diag(kxx).sum()) / (m * (m - 1)) + (kyy.sum() - np.diag(kyy).sum()) / (m * (m - 1))
        scores.append(mmd - 2 * kxy.mean())
    return float(np.mean(scores))


def test_fid_and_kid_agree_with_independent_formulas():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(400, 64))
    f2 = rng.normal(0.3, 1.2, size=(300, 64)) + rng.normal(size=(1, 64))
    ours = frechet_distance(*statistics(torch.from_numpy(f1)), *statistics(torch.from_numpy(f2)))
    assert ours == pytest.approx(scipy_fid(f1, f2), rel=1e-6)

    kid = kernel_inception_distance(torch.from_numpy(f1), torch.from_numpy(f2), subsets=5, subset_size=100, seed=3)
    gen = torch.Generator().manual_seed(3)
    pairs = [(torch.randperm(400, generator=gen)[:100].numpy(), torch.randperm(300, generator=gen)[:100].numpy())
             for _ in range(5)]  # fmt: skip
    assert kid == pytest.approx(numpy_kid(f1, f2, pairs), rel=1e-6)


def test_swd_ranks_the_same_data_far_below_noise_and_blur(faces):
    swd = SlicedWasserstein(faces[:2048])
    same = swd(to_unit(faces[2048:2304]))
    blurred = swd(torch.nn.functional.avg_pool2d(to_unit(faces[2048:2304]), 3, 1, 1))
    noise = swd(torch.rand(256, 3, 32, 32) * 2 - 1)
    assert same < blurred < noise and same < noise / 2
    assert swd(to_unit(faces[2048:2304])) == same  # the same directions and patches every call: scores compare


def test_swd_sorts_the_real_side_once_and_scores_as_the_paper_defines(faces):
    """The cached real projections change nothing: the score is the mean over levels of the 1-D Wasserstein distances
    of projections on the same directions, computed here from scratch."""
    from trainer.quality import _descriptors, _positions, _sorted_projections, laplacian_pyramid

    swd = SlicedWasserstein(faces[:512])
    fake = to_unit(faces[1024:1152])
    levels = laplacian_pyramid(fake)
    real = laplacian_pyramid(to_unit(faces[:512][torch.randperm(512, generator=torch.Generator().manual_seed(0))[:128]]))
    gen = torch.Generator().manual_seed(0)
    torch.randperm(512, generator=gen)  # the pick, then the real positions, as drawn
    real_at = [_positions(level.shape, 32, gen) for level in real]
    distances = []
    for lr, lf, at_r, at_f, d in zip(real, levels, real_at, swd.at, swd.directions):
        pr = torch.sort(_descriptors(lr, at_r) @ d, dim=0)[0]
        pf = torch.sort(_descriptors(lf, at_f) @ d, dim=0)[0]
        distances.append((pr - pf).abs().mean().item())
    assert swd(fake) == pytest.approx(1e3 * sum(distances) / len(distances), rel=1e-5)
    assert all(torch.equal(r, _sorted_projections(_descriptors(lr, at), d))
               for r, lr, at, d in zip(swd.real, real, real_at, swd.directions))  # fmt: skip


def test_in_run_fid_leaves_the_last_epochs_scoring_within_the_budget(faces):
    from trainer.evaluate import BUDGET, Evaluator

    ev = Evaluator(TrainConfig(dataset="procedural", image_size=32), faces, torch.device("cpu"))
    ev.per_image = 0.01  # seconds of training per image: a scoring of 256 costs 2.56 s, 5.12 s before real is cached
    need = (2 * 2.56 + 2.56) / BUDGET  # this scoring (real images too) and the last epoch's, reserved
    assert not ev.fid_due(2, 0.99 * need, final=False) and ev.fid_due(2, 1.01 * need, final=False)
    assert ev.fid_due(3, 0.0, final=True)  # the last epoch always


def test_on_a_cpu_a_scoring_is_charged_the_scoring_threads_whole_cpu_time(faces):
    """Training's threads wait for each other at every op, so CPU time the scorer takes from one core is lost to the
    whole step: charged spread over the cores instead, FID cost runs 14% against the 10% budget (docs/quality.md)."""
    import time

    from trainer.evaluate import Evaluator

    ev = Evaluator(TrainConfig(dataset="procedural", image_size=32), faces, torch.device("cpu"))
    clock, start = ev._clock(), time.thread_time()
    while time.thread_time() - start < 0.2:  # 0.2 s of this thread's CPU time
        pass
    assert ev._since(clock) >= 0.2


def test_loading_and_timing_the_cost_model_is_charged_to_the_budget(faces):
    from trainer.evaluate import Evaluator

    ev = Evaluator(TrainConfig(dataset="procedural", image_size=32), faces, torch.device("cpu"))
    ev.measure()
    if ev.unavailable:
        pytest.skip(ev.unavailable)
    assert ev.per_image > 0 and ev.spent > ev.per_image * 8  # the load and the warm-up image, beyond the probe's 8


def test_fid_of_two_halves_is_far_below_fid_against_noise(faces):
    try:
        features = InceptionFeatures(size=75)  # the smallest input Inception-v3 takes: cheap enough for a CPU test
    except FeaturesUnavailable as e:
        pytest.skip(str(e))
    a, b = features(to_unit(faces[:128])), features(to_unit(faces[128:256]))
    noise = features(torch.rand(128, 3, 32, 32) * 2 - 1)
    halves = frechet_distance(*statistics(a), *statistics(b))
    against_noise = frechet_distance(*statistics(a), *statistics(noise))
    assert halves < against_noise / 3  # 128 images a side: FID is biased upwards at this count, KID is not
    assert kernel_inception_distance(a, b) < kernel_inception_distance(a, noise) / 5


def test_every_epoch_reaches_the_server_with_its_score(server):
    run = server.create(epochs=2)
    done = server.wait_status(run["id"], "completed")
    samples = server.client.get(f"/api/runs/{run['id']}/samples").json()
    swd = [s["swd"] for s in samples]
    assert len(swd) == 2 and all(isinstance(v, float) and v > 0 for v in swd)
    assert done["swd"] == swd[-1] and done["best_swd"] == min(swd)
    assert done["fid"] is None  # a run of seconds stays inside its evaluation budget: no FID
