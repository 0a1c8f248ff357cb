"""DCGAN generator and discriminator, built from the image size.

At 96x96 the layer stacks are exactly the article's `NetG`/`NetD` (same `main.N` indices, same shapes), so `netg.pth`
and `netd.pth` load into the article's own classes. The one difference: D returns logits (no final Sigmoid, which holds no
parameters) and training uses BCEWithLogitsLoss, which is numerically safe and autocast-friendly.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import TrainConfig

# Hidden (BatchNorm) layers between the 4x4 core and the image, per image size. 96 is the article's stack: the same
# depth as 64 but a last layer of kernel 5, stride 3 (32 -> 96) instead of kernel 4, stride 2 (32 -> 64).
_DEPTH = {32: 3, 64: 4, 96: 4, 128: 5}


def _outer(image_size: int) -> tuple[int, int, int]:
    """Kernel, stride, padding of the layer that touches the image."""
    return (5, 3, 1) if image_size == 96 else (4, 2, 1)


class NetG(nn.Module):
    def __init__(self, image_size: int, nz: int, ngf: int, channels: int):
        super().__init__()
        widths = [ngf * 2**i for i in reversed(range(_DEPTH[image_size]))]  # e.g. 8ngf, 4ngf, 2ngf, ngf
        layers: list[nn.Module] = []
        c_in = nz
        for i, width in enumerate(widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(c_in, width, 4, stride, pad, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
            c_in = width
        layers += [nn.ConvTranspose2d(c_in, channels, *_outer(image_size), bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class NetD(nn.Module):
    def __init__(self, image_size: int, ndf: int, channels: int):
        super().__init__()
        depth = _DEPTH[image_size]
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, *_outer(image_size), bias=False), nn.LeakyReLU(0.2, True)]
        for i in range(1, depth):
            c_in, c_out = ndf * 2 ** (i - 1), ndf * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * 2 ** (depth - 1), 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)  # logits


def weights_init(m: nn.Module) -> None:
    """DCGAN init (Radford et al.): conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), shift 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_generator(cfg: TrainConfig) -> NetG:
    net = NetG(cfg.image_size, cfg.nz, cfg.ngf, cfg.channels)
    net.apply(weights_init)
    return net


def build_discriminator(cfg: TrainConfig) -> NetD:
    net = NetD(cfg.image_size, cfg.ndf, cfg.channels)
    net.apply(weights_init)
    return net


def generator_from_state_dict(state: dict[str, torch.Tensor]) -> NetG:
    """Rebuild a generator from its checkpoint alone: sizes follow from the transposed-conv weight shapes."""
    convs = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    nz, ngf, channels = convs[0].shape[0], convs[-1].shape[0], convs[-1].shape[1]
    image_size = 96 if convs[-1].shape[-1] == 5 else 4 * 2 ** (len(convs) - 1)
    net = NetG(image_size, nz, ngf, channels)
    net.load_state_dict(state)
    return net


def discriminator_from_state_dict(state: dict[str, torch.Tensor]) -> NetD:
    """Rebuild a discriminator from its checkpoint alone: the first conv gives ndf and channels, the depth the size."""
    convs = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    ndf, channels = convs[0].shape[0], convs[0].shape[1]
    image_size = 96 if convs[0].shape[-1] == 5 else 4 * 2 ** (len(convs) - 1)
    net = NetD(image_size, ndf, channels)
    net.load_state_dict(state)
    return net
