"""Datasets: built-in emoji and procedural faces, folders of images, torchvision sets; clear errors for bad ones."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import trainer.data as data
from trainer.config import TrainConfig
from trainer.data import DatasetError, load_images


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANBOARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GANBOARD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "ganboard"


# --- emoji -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_emoji_renders_once_then_loads_from_cache(cache, monkeypatch, channels):
    messages = []
    images = load_images(TrainConfig(dataset="emoji", image_size=32, channels=channels), log=messages.append)
    assert images.dtype == torch.uint8 and images.shape[1:] == (channels, 32, 32) and images.is_contiguous()
    assert len(images) > 1000
    assert len(messages) == 1 and messages[0].startswith(f"emoji: rendered {len(images)} glyphs at 32px")
    assert (images < 200).flatten(1).float().mean(1).min() >= 0.01  # no blank glyph survived
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], 2)
    assert (border >= 240).all()  # centred, with a margin: the glyphs stay clear of the edges
    assert (cache / f"emoji_32_{channels}.pt").is_file()
    assert [p.name for p in cache.iterdir()] == [f"emoji_32_{channels}.pt"]  # no temporary file left behind

    monkeypatch.setattr(data, "_render_emoji", lambda *a: pytest.fail("rendered again despite the cache"))
    assert torch.equal(load_images(TrainConfig(dataset="emoji", image_size=32, channels=channels)), images)


def test_damaged_cache_is_rebuilt(cache):
    cache.mkdir()
    (cache / "thing.pt").write_bytes(b"truncated")
    made = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3)
    assert torch.equal(data._cached("thing.pt", lambda: made, print), made)
    assert torch.equal(torch.load(cache / "thing.pt", weights_only=True), made)


def test_unwritable_cache_is_a_warning(cache):
    cache.write_text("a file where the cache folder should be")
    messages = []
    made = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    assert torch.equal(data._cached("thing.pt", lambda: made, messages.append), made)
    assert len(messages) == 1 and messages[0].startswith("could not cache thing.pt")


# --- procedural --------------------------------------------------------------------------------------------------------


def test_procedural_is_deterministic_and_varied():
    a, b, c = (load_images(TrainConfig(dataset="procedural", seed=s)) for s in (1, 1, 2))
    assert a.shape == (data.PROCEDURAL_COUNT, 3, 32, 32) and a.dtype == torch.uint8 and a.is_contiguous()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(torch.unique(a.flatten(1), dim=0)) == len(a)  # every image differs
    assert a.float().std(0).mean() > 40  # and by a lot: the pixel values spread across images
    assert (a.float().std((1, 2, 3)) > 10).all()  # no image is a flat colour


def test_procedural_greyscale_is_luminance_and_other_sizes_work():
    rgb = load_images(TrainConfig(dataset="procedural", seed=3))
    grey = load_images(TrainConfig(dataset="procedural", seed=3, channels=1))
    luma = (rgb.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert grey.shape == (len(rgb), 1, 32, 32) and (grey.float() - luma).abs().max() <= 0.5
    assert data.procedural_faces(8, 128, seed=3).shape == (8, 3, 128, 128)


# --- folder ------------------------------------------------------------------------------------------------------------


def folder_config(path, **kw):
    return TrainConfig(dataset="folder", data_path=str(path), image_size=32, **kw)


def stripes(size: tuple[int, int], colours: list[str]) -> Image.Image:
    """Equal stripes of the given colours, across the longer side."""
    img = Image.new("RGB", size)
    n, wide = len(colours), size[0] >= size[1]
    for i, colour in enumerate(colours):
        length = (size[0] if wide else size[1]) // n
        box = (i * length, 0, (i + 1) * length, size[1]) if wide else (0, i * length, size[0], (i + 1) * length)
        img.paste(colour, box)
    return img


def test_images_directly_in_the_folder(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "a.png")
    Image.new("RGB", (50, 50), "blue").save(tmp_path / "b.JPEG")
    Image.new("RGB", (30, 30), "lime").save(tmp_path / "c.Bmp")
    images = load_images(folder_config(tmp_path))
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
    assert images[0, :, 16, 16].tolist() == [255, 0, 0] and images[2, :, 16, 16].tolist() == [0, 255, 0]
    assert (images[1, 2].float().mean() > 240) and (images[1, :2].float().mean() < 15)  # JPEG: blue, roughly


def test_images_in_subfolders_at_any_depth(tmp_path):
    (tmp_path / "cats" / "old").mkdir(parents=True)
    (tmp_path / "dogs").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "cats" / "1.png")
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "cats" / "old" / "2.gif")
    Image.new("RGB", (40, 40), "lime").save(tmp_path / "dogs" / "3.webp", lossless=True)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    images = load_images(folder_config(tmp_path))
    assert [tuple(px) for px in images[:, :, 16, 16].tolist()] == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]


def test_any_size_and_aspect_is_scaled_then_centre_cropped(tmp_path):
    # Scaled to 96x32 (32x96), the middle 32 pixels are blue; squashed instead of cropped, red and green would show.
    stripes((300, 100), ["red", "blue", "blue", "blue", "lime"]).save(tmp_path / "1_wide.png")
    stripes((50, 150), ["red", "blue", "blue", "blue", "lime"]).save(tmp_path / "2_tall.png")
    Image.new("RGB", (8, 8), "yellow").save(tmp_path / "3_tiny.png")  # scaled up
    images = load_images(folder_config(tmp_path))
    assert images.shape == (3, 3, 32, 32)
    assert (images[:2] == torch.tensor([0, 0, 255], dtype=torch.uint8).view(1, 3, 1, 1)).all()
    assert (images[2] == torch.tensor([255, 255, 0], dtype=torch.uint8).view(3, 1, 1)).all()


def test_greyscale_and_transparency(tmp_path):
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(tmp_path / "clear.png")  # transparent black: white
    Image.new("L", (40, 40), 100).save(tmp_path / "grey.png")
    assert load_images(folder_config(tmp_path))[:, :, 16, 16].tolist() == [[255, 255, 255], [100, 100, 100]]
    grey = load_images(folder_config(tmp_path, channels=1))
    assert grey.shape == (2, 1, 32, 32) and grey[:, 0, 16, 16].tolist() == [255, 100]


def test_thread_count_does_not_change_the_result(tmp_path):
    for i in range(12):
        Image.new("RGB", (40 + i, 40), (20 * i, 0, 0)).save(tmp_path / f"{i:02}.png")
    one = load_images(folder_config(tmp_path, num_workers=1))
    assert torch.equal(one, load_images(folder_config(tmp_path, num_workers=4)))
    assert one[:, 0, 16, 16].tolist() == [20 * i for i in range(12)]  # in file name order


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    messages = []
    images = load_images(folder_config(tmp_path), log=messages.append)
    assert len(images) == 1 and images[0, :, 16, 16].tolist() == [255, 0, 0]
    assert messages == [f"skipped 1 unreadable of 2 images in {tmp_path}: broken.jpg"]


def test_the_warning_names_at_most_five(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "good.png")
    Image.new("RGB", (40, 40), "red").save(tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    for i in range(6):
        (tmp_path / f"bad{i}.gif").write_bytes(b"GIF89a garbage")
    messages = []
    assert len(load_images(folder_config(tmp_path), log=messages.append)) == 2
    assert messages == [f"skipped 7 unreadable of 9 images in {tmp_path}: bad0.gif, bad1.gif, bad2.gif, bad3.gif, "
                        "bad4.gif, ..."]  # fmt: skip


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"broken")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=f"none of the 2 images in '{tmp_path}' could be read"):
        load_images(folder_config(tmp_path))


def test_missing_path_and_file_path_are_errors(tmp_path):
    gone = tmp_path / "gone"
    with pytest.raises(DatasetError, match=f"folder '{gone}' does not exist"):
        load_images(TrainConfig.model_construct(dataset="folder", data_path=str(gone), image_size=32, channels=3))
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=f"'{tmp_path / 'file.png'}' is not a folder"):
        load_images(TrainConfig.model_construct(dataset="folder", data_path=str(tmp_path / "file.png")))


@pytest.mark.parametrize("files, seen", [([], 0), (["a.txt", "sub/b.txt"], 2)])
def test_no_images_is_an_error_saying_what_was_seen(tmp_path, files, seen):
    for name in files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    with pytest.raises(DatasetError, match=rf"'{tmp_path}' holds no images \({seen} files seen") as err:
        load_images(folder_config(tmp_path))
    assert ".jpg, .jpeg, .png, .bmp, .gif, .webp" in str(err.value)


def test_too_big_for_memory_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_BYTES", 2 * 3 * 32 * 32)
    for i in range(3):
        Image.new("RGB", (40, 40)).save(tmp_path / f"{i}.png")
    with pytest.raises(DatasetError, match="3 images .* GiB of memory, more than the 0 GiB limit"):
        load_images(folder_config(tmp_path))
    assert len(load_images(folder_config(tmp_path, channels=1))) == 3  # greyscale needs a third: fits


# --- torchvision sets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_torchvision_set_missing_says_how_to_get_it(tmp_path, name):
    with pytest.raises(DatasetError, match=f"{name}: not found under '{tmp_path}'.*set download=true or put the files"):
        load_images(TrainConfig(dataset=name, data_path=str(tmp_path)))


def test_torchvision_root_defaults_to_the_cache(cache):
    with pytest.raises(DatasetError, match=f"not found under '{cache / 'torchvision'}'"):
        load_images(TrainConfig(dataset="mnist"))


def test_failed_download_says_why(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -3] name resolution>")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DatasetError, match=f"mnist: download into '{tmp_path}' failed: .*name resolution"):
        load_images(TrainConfig(dataset="mnist", data_path=str(tmp_path), download=True))


def write_mnist(root, digits: torch.Tensor) -> None:
    """Files in torchvision's raw MNIST layout (idx format), for both splits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = len(digits)
    for prefix in ("train", "t10k"):
        header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + digits.numpy().tobytes())
        labels = (2049).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(n)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)


def test_torchvision_set_from_local_files_is_resized_and_coloured(tmp_path):
    digits = torch.zeros(10, 28, 28, dtype=torch.uint8)
    digits[:, 4:24, 4:24] = torch.arange(10, dtype=torch.uint8).view(10, 1, 1) * 25  # a grey square each
    write_mnist(tmp_path, digits)
    images = load_images(TrainConfig(dataset="mnist", data_path=str(tmp_path), image_size=64))
    assert images.shape == (10, 3, 64, 64) and images.dtype == torch.uint8 and images.is_contiguous()
    assert images[:, :, 32, 32].tolist() == [[25 * i] * 3 for i in range(10)]
    assert (images[:, :, :2, :] == 0).all()  # the border stays black
    grey = load_images(TrainConfig(dataset="mnist", data_path=str(tmp_path), image_size=32, channels=1))
    assert grey.shape == (10, 1, 32, 32) and grey[:, 0, 16, 16].tolist() == [25 * i for i in range(10)]
