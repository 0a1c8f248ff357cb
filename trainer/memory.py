"""Trainer side of memory: what a config needs to train, from the layer shapes alone (no torch: app/runs/memory.py asks).

The layer stacks mirror trainer/models.py; tests/test_memory.py checks the parameter counts against the real modules.
The figure is an estimate that errs high: weights, gradients, both Adam moments and the temporaries of Adam's step in
float32; the host copy of weights and moments an epoch-end checkpoint takes (bench/memory_peak.py: leaving out these
two made ngf=ndf=512 at 32 px 1.54x over the estimate, issue 20.9); the activations that
a training step keeps for its backward pass (the larger of D's step, D on a real and a fake batch, and G's step, D on
G's output), counted in float32 with room for the gradients flowing back; the dataset as uint8 (it stays in CPU
memory); and a fixed allowance for the framework itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.config import TrainConfig

DEPTH = {32: 3, 64: 4, 96: 4, 128: 5}  # trainer.models._DEPTH: BatchNorm layers between the 4x4 core and the image
DATASET_IMAGES = {"emoji": 4096, "procedural": 4096, "mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000}
FLOAT = 4  # bytes
STATE_COPIES = 5  # weights, gradients, Adam's two moments, and the temporaries of Adam's multi-tensor step
CHECKPOINT_COPIES = 3  # the host copy an epoch-end checkpoint takes: weights and Adam's two moments (trainer/loop.py)
# A layer's convolution output and normalised output are kept, plus the gradients coming back and going on: with 3
# the article's step (batch 256) peaked 1.05x over the estimate (bench/memory_peak.py).
KEPT_PER_OUTPUT = 4
FRAMEWORK = 2**29  # torch itself (and a CUDA context): half a GiB


def _outer(image_size: int) -> tuple[int, int]:
    """Kernel and stride of the layer that touches the image (96: the article's kernel 5, stride 3)."""
    return (5, 3) if image_size == 96 else (4, 2)


def generator_layers(cfg: TrainConfig) -> list[tuple[int, int, int, int]]:
    """(channels in, channels out, kernel, output side) of each transposed convolution; the last makes the image."""
    depth = DEPTH[cfg.image_size]
    layers, c_in, side = [], cfg.nz, 4
    for i in reversed(range(depth)):
        layers.append((c_in, cfg.ngf * 2**i, 4, side))
        c_in, side = cfg.ngf * 2**i, side * 2
    layers.append((c_in, cfg.channels, _outer(cfg.image_size)[0], cfg.image_size))
    return layers


def discriminator_layers(cfg: TrainConfig) -> list[tuple[int, int, int, int]]:
    """(channels in, channels out, kernel, output side) of each convolution, the last one giving the 1x1 logit."""
    depth = DEPTH[cfg.image_size]
    kernel, stride = _outer(cfg.image_size)
    layers, side = [(cfg.channels, cfg.ndf, kernel, cfg.image_size // stride)], cfg.image_size // stride
    for i in range(1, depth):
        side //= 2
        layers.append((cfg.ndf * 2 ** (i - 1), cfg.ndf * 2**i, 4, side))
    layers.append((cfg.ndf * 2 ** (depth - 1), 1, 4, 1))
    return layers


def _parameters(layers: list[tuple[int, int, int, int]], normed: range) -> int:
    """Convolution weights (no biases) plus BatchNorm's scale and shift on the layers in `normed`."""
    return sum(c_in * c_out * k * k + (2 * c_out if i in normed else 0) for i, (c_in, c_out, k, _) in enumerate(layers))


def parameter_counts(cfg: TrainConfig) -> tuple[int, int]:
    """(generator, discriminator) parameters, as `sum(p.numel() for p in net.parameters())` counts them."""
    g, d = generator_layers(cfg), discriminator_layers(cfg)
    return _parameters(g, range(len(g) - 1)), _parameters(d, range(1, len(d) - 1))


@dataclass(frozen=True)
class Estimate:
    model: int  # bytes: weights, gradients, Adam moments of G and D
    activations: int
    dataset: int
    checkpoint: int  # the host copy of the resume state, while the writer saves it

    @property
    def host_only(self) -> int:
        """What stays in CPU memory whatever the device: the dataset and the checkpoint's copy."""
        return self.dataset + self.checkpoint

    @property
    def total(self) -> int:
        return self.model + self.activations + self.host_only + FRAMEWORK


def estimate(cfg: TrainConfig) -> Estimate:
    """Bytes a run of `cfg` needs. A folder dataset counts as 0 here: the worker measures (and bounds) it on loading."""
    g_params, d_params = parameter_counts(cfg)
    per_image_g = sum(c_out * side * side for _, c_out, _, side in generator_layers(cfg))
    per_image_d = sum(c_out * side * side for _, c_out, _, side in discriminator_layers(cfg))
    kept = max(2 * per_image_d, per_image_g + per_image_d)  # D's step vs G's step
    return Estimate(
        model=(g_params + d_params) * FLOAT * STATE_COPIES,
        activations=cfg.batch_size * kept * FLOAT * KEPT_PER_OUTPUT,
        dataset=DATASET_IMAGES.get(cfg.dataset, 0) * cfg.channels * cfg.image_size**2,
        checkpoint=(g_params + d_params) * FLOAT * CHECKPOINT_COPIES,
    )
