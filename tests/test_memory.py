"""The torch-free memory estimate (trainer/memory.py) against the real modules, and how an OOM-killed worker is named."""

from __future__ import annotations

import pytest

from app.runs.exits import describe_exit
from trainer.config import TrainConfig
from trainer.memory import estimate, parameter_counts
from trainer.models import build_discriminator, build_generator

GiB = 2**30


@pytest.mark.parametrize(
    "config",
    [
        dict(image_size=32, ngf=8, ndf=8, nz=16, channels=3),
        dict(image_size=64, ngf=32, ndf=48, nz=100, channels=1),
        dict(image_size=96, ngf=64, ndf=64, nz=100, channels=3),  # the article
        dict(image_size=128, ngf=16, ndf=24, nz=7, channels=3),
    ],
)
def test_the_analytic_parameter_count_is_the_real_one(config):
    cfg = TrainConfig(**config)
    real = tuple(sum(p.numel() for p in net.parameters()) for net in (build_generator(cfg), build_discriminator(cfg)))
    assert parameter_counts(cfg) == real


def test_the_estimate_sees_the_issue_config_and_spares_the_presets():
    huge = estimate(TrainConfig(image_size=128, ngf=512, ndf=512, nz=1024, batch_size=4096))
    # Issue 10: "about 23 GiB for weights, gradients and Adam state alone"; and Adam's temporaries (issue 20.9).
    assert 28 * GiB < huge.model < 30 * GiB
    assert huge.activations > huge.model
    for name in ("quick", "article"):
        assert estimate(TrainConfig.preset(name)).total < 2 * GiB


@pytest.mark.parametrize("config, peak", [
    (dict(image_size=32, ngf=512, ndf=512), 3.29),  # issue 20.9: estimated 2.14 GiB before
    (dict(image_size=96, ngf=64, ndf=64, batch_size=256), 1.66),  # the article: estimated 1.58 GiB before
])  # fmt: skip
def test_the_estimate_is_above_the_measured_peak(config, peak):
    """Peak RSS on this machine's CPU by bench/memory_peak.py: two training steps and an epoch-end checkpoint's host
    copy. The estimate must err high, by less than a third."""
    total = estimate(TrainConfig(**config, device="cpu")).total / GiB
    assert peak <= total < peak * 4 / 3


def test_an_oom_kill_is_named_as_such():
    assert describe_exit(-9) == "the worker was killed (SIGKILL), most likely out of memory"
    assert describe_exit(-15) == "the worker was killed by SIGTERM"
    assert describe_exit(1) == "the worker exited with code 1"
    assert "re-attached" in describe_exit(None)
