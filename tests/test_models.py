"""Our 96x96 stacks are the article's NetG/NetD: checkpoints load into the article's own classes."""

import pytest
import torch

from tests.article import ArticleNetD, ArticleNetG
from trainer.config import TrainConfig
from trainer.models import build_discriminator, build_generator, generator_from_state_dict


def test_article_checkpoints_load_into_the_article_classes():
    cfg = TrainConfig.preset("article")
    netg, netd = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    art_g, art_d = ArticleNetG().eval(), ArticleNetD().eval()
    art_g.load_state_dict(netg.state_dict())  # strict: same keys, same shapes
    art_d.load_state_dict(netd.state_dict())
    z = torch.randn(2, 100, 1, 1)
    with torch.no_grad():
        assert torch.equal(art_g(z), netg(z))
        x = art_g(z)
        assert torch.allclose(art_d(x), torch.sigmoid(netd(x)))  # ours returns logits


@pytest.mark.parametrize("size", [32, 64, 96, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_size_builds_and_round_trips(size, channels):
    cfg = TrainConfig(image_size=size, channels=channels, ngf=8, ndf=8, nz=16)
    netg, netd = build_generator(cfg), build_discriminator(cfg)
    images = netg(torch.randn(2, 16, 1, 1))
    assert images.shape == (2, channels, size, size)
    assert netd(images).shape == (2,)
    rebuilt = generator_from_state_dict(netg.state_dict())
    assert rebuilt.state_dict().keys() == netg.state_dict().keys()


def test_weights_follow_dcgan_init():
    netg = build_generator(TrainConfig(ngf=64))
    w = netg.main[0].weight
    assert abs(w.mean().item()) < 0.002 and abs(w.std().item() - 0.02) < 0.002
