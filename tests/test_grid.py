"""The epoch's sample grid is drawn without torchvision, pixel for pixel as torchvision's save_image draws it."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from trainer.grid import grid_image


@pytest.mark.parametrize("n, channels", [(64, 3), (10, 3), (5, 1)])
def test_grid_matches_torchvision(tmp_path, n, channels):
    images = torch.rand(n, channels, 12, 12) * 2.4 - 1.2  # a little outside [-1, 1]: clamped alike
    save_image(images, tmp_path / "tv.png", nrow=8, normalize=True, value_range=(-1, 1))
    ours = grid_image(images).numpy()
    with Image.open(tmp_path / "tv.png") as tv:
        np.testing.assert_array_equal(ours, np.asarray(tv.convert("RGB")))
