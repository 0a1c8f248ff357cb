"""Datasets: built-in emoji and procedural faces, folders of images, torchvision sets; clear errors for bad ones."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from trainer.config import TrainConfig
from trainer.data import DatasetError, load_images, procedural_faces


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANBOARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("channels", [3, 1])
def test_emoji_renders_once_and_caches(cache, channels):
    images = load_images(TrainConfig(dataset="emoji", image_size=32, channels=channels))
    assert images.dtype == torch.uint8 and images.shape[1:] == (channels, 32, 32)
    assert len(images) > 1000
    assert (cache / "emoji_32.pt").is_file()
    assert torch.equal(load_images(TrainConfig(dataset="emoji", image_size=32, channels=channels)), images)
    assert (images < 200).flatten(1).float().mean(1).min() >= 0.01  # no blank glyph survived


def test_procedural_is_deterministic_and_varied():
    a, b, c = procedural_faces(256, 32, 1), procedural_faces(256, 32, 1), procedural_faces(256, 32, 2)
    assert a.shape == (256, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.float().std(0).mean() > 40  # images differ from one another


def folder_config(path, **kw):
    return TrainConfig(dataset="folder", data_path=str(path), image_size=32, **kw)


def test_folder_flat_and_nested_with_any_shape(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    Image.new("RGB", (64, 40), "red").save(tmp_path / "wide.PNG")
    Image.new("RGB", (30, 90), "blue").save(tmp_path / "sub" / "tall.png")
    Image.new("L", (50, 50), 128).save(tmp_path / "sub" / "deeper" / "grey.bmp")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images(folder_config(tmp_path))
    assert images.shape == (3, 3, 32, 32)
    assert set(map(tuple, images[:, :, 16, 16].tolist())) == {(255, 0, 0), (0, 0, 255), (128, 128, 128)}
    assert load_images(folder_config(tmp_path, channels=1)).shape == (3, 1, 32, 32)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    warnings = []
    images = load_images(folder_config(tmp_path), log=warnings.append)
    assert len(images) == 1
    assert warnings == [f"skipped 1 unreadable of 2 images in {tmp_path}: broken.jpg"]


def test_folder_errors_say_which(tmp_path):
    cfg = folder_config(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"holds no images \(1 files seen"):
        load_images(cfg)
    (tmp_path / "b.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="none of the 1 images"):
        load_images(cfg)
    gone = tmp_path / "gone"
    gone.mkdir()
    cfg = folder_config(gone)
    gone.rmdir()
    with pytest.raises(DatasetError, match="does not exist"):
        load_images(cfg)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_set_missing_says_how_to_get_it(tmp_path, name):
    with pytest.raises(DatasetError, match="set download=true or put the files there"):
        load_images(TrainConfig(dataset=name, data_path=str(tmp_path)))


def test_torchvision_set_from_local_files(tmp_path):
    """MNIST files written in torchvision's processed layout load, resized to 32 and turned to 3 channels."""
    import torchvision

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    digits = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
    for prefix, n in (("train", 10), ("t10k", 10)):
        header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + digits.numpy().tobytes())
        labels = (2049).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(range(n))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    assert torchvision.datasets.MNIST(str(tmp_path), train=True).data.shape == (10, 28, 28)
    images = load_images(TrainConfig(dataset="mnist", data_path=str(tmp_path), image_size=32))
    assert images.shape == (10, 3, 32, 32)
