"""TrainConfig: every hyperparameter of a run, the one schema shared by the trainer, the CLI and the server.

This module imports no torch, so the server can validate forms with it without loading a training stack.
Field metadata (`group`, `description`) drives the dashboard's new-run form.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

DATASETS = ("emoji", "procedural", "folder", "mnist", "fashion-mnist", "cifar10")
IMAGE_SIZES = (32, 64, 96, 128)
FIELD_GROUPS = ("data", "model", "optimisation", "schedule", "hardware")  # the new-run form's fieldsets, in order
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
# What a stopped or finished run may change when it carries on from its resume.pt: nothing the checkpoint's shapes, the
# data or the noise depend on.
RESUME_CHANGES = ("lr_g", "lr_d", "epochs", "max_steps", "save_every", "eval_every")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# The file each torchvision set cannot load without (under its root), in either of the layouts torchvision reads.
TORCHVISION_FILES = {
    "mnist": ("MNIST/raw/train-images-idx3-ubyte", "MNIST/processed/training.pt"),
    "fashion-mnist": ("FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/processed/training.pt"),
    "cifar10": ("cifar-10-batches-py/data_batch_1",),
}


def _field(default: Any, group: str, description: str, **kw: Any) -> Any:
    assert group in FIELD_GROUPS, group
    return Field(default, description=description, json_schema_extra={"group": group}, **kw)


class TrainConfig(BaseModel):
    """The article's `Config`, with clear names and ranges. Unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # data
    dataset: Literal["emoji", "procedural", "folder", "mnist", "fashion-mnist", "cifar10"] = _field(
        "emoji", "data", "Training images: built-in emoji or procedural faces, a folder of images, or a torchvision set."
    )
    data_path: str | None = _field(
        None,
        "data",
        "Folder of images (dataset=folder) or torchvision root (mnist, fashion-mnist, cifar10).",
        validate_default=True,
    )
    download: bool = _field(False, "data", "Let torchvision download mnist/fashion-mnist/cifar10 into data_path.")
    image_size: int = _field(32, "data", "Side of the square images, in pixels: 32, 64, 96 (the article) or 128.")
    channels: int = _field(3, "data", "1 for greyscale, 3 for colour.", ge=1, le=3)
    # model
    nz: int = _field(100, "model", "Length of the noise vector z fed to the generator.", ge=1, le=1024)
    ngf: int = _field(32, "model", "Generator width: feature maps of its last hidden layer.", ge=4, le=512)
    ndf: int = _field(32, "model", "Discriminator width: feature maps of its first layer.", ge=4, le=512)
    netg_init: str | None = _field(None, "model", "Optional netg.pth to start the generator from.")
    netd_init: str | None = _field(None, "model", "Optional netd.pth to start the discriminator from.")
    # optimisation
    batch_size: int = _field(64, "optimisation", "Images per batch (in all: split evenly among the gpus).", ge=1, le=4096)
    lr_g: float = _field(2e-4, "optimisation", "Adam learning rate of the generator.", gt=0, le=1)
    lr_d: float = _field(2e-4, "optimisation", "Adam learning rate of the discriminator.", gt=0, le=1)
    beta1: float = _field(0.5, "optimisation", "Adam beta1 for both networks.", ge=0, lt=1)
    # schedule
    epochs: int = _field(70, "schedule", "Passes over the dataset.", ge=1, le=100_000)
    d_every: int = _field(1, "schedule", "Train D on every d_every-th batch.", ge=1, le=1000)
    g_every: int = _field(1, "schedule", "Train G on every g_every-th batch (the article: 5).", ge=1, le=1000)
    save_every: int = _field(10, "schedule", "Write checkpoints every save_every epochs (and always at the end).", ge=1)
    max_steps: int | None = _field(None, "schedule", "Stop after this many batches in all (for quick checks).", ge=1)
    eval_every: int | None = _field(
        None, "schedule", "Score FID and KID every eval_every epochs; empty = as often as 10% of the training time allows.",
        ge=1,
    )
    fid: bool = _field(
        True, "schedule", "Score FID and KID (Inception features) within 10% of the training time and at the last epoch."
    )
    keep_last: int | None = _field(
        5, "schedule", "Keep the newest keep_last numbered checkpoints (and the best); empty = keep every one.", ge=1
    )
    save_seconds: float = _field(
        300, "schedule", "Write resume.pt at most this often (and with every numbered checkpoint, on cancel and at the end).",
        gt=0, le=86_400,
    )
    seed: int = _field(0, "schedule", "Random seed: same seed, same run on CPU.", ge=0, le=2**32 - 1)
    # hardware
    device: str = _field("auto", "hardware", "auto (first GPU, else CPU), cpu, cuda or cuda:N.")
    bf16: bool | None = _field(
        None,
        "hardware",
        "bfloat16 autocast: empty = where measured faster (GPU: images of 64px and more; CPU: with AMX); "
        "true or false to force.",
    )
    num_workers: int = _field(0, "hardware", "Threads decoding a folder dataset (0 = one per core).", ge=0, le=64)
    gpus: int = _field(
        1, "hardware", "Training processes, one GPU each (on the CPU: processes sharing the cores), with torchrun and "
        "DistributedDataParallel; batch_size must divide evenly among them.", ge=1, le=64,
    )
    sync_batchnorm: bool = _field(
        False, "hardware", "With several gpus: BatchNorm statistics over the global batch (SyncBatchNorm, GPUs only); "
        "off: each GPU normalises its own share, as the article's batch of that size would.",
    )

    @field_validator("image_size")
    @classmethod
    def _known_size(cls, v: int) -> int:
        if v not in IMAGE_SIZES:
            raise ValueError(f"must be one of {', '.join(map(str, IMAGE_SIZES))} (the DCGAN stacks we can build)")
        return v

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, v: int) -> int:
        if v not in (1, 3):
            raise ValueError("must be 1 (greyscale) or 3 (colour)")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        v = v.strip()
        if not _DEVICE_RE.match(v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("data_path", "netg_init", "netd_init", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("data_path")
    @classmethod
    def _folder_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("dataset") != "folder":
            return v
        if not v:
            raise ValueError("dataset 'folder' needs data_path, a folder of images")
        p = Path(v).expanduser()
        if not p.exists():
            raise ValueError(f"folder {v!r} does not exist")
        if not p.is_dir():
            raise ValueError(f"{v!r} is not a folder")
        return v

    @field_validator("netg_init", "netd_init")
    @classmethod
    def _init_exists(cls, v: str | None) -> str | None:
        if v and not Path(v).expanduser().is_file():
            raise ValueError(f"file {v!r} does not exist")
        return v

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainConfig":
        if self.batch_size % self.gpus:
            raise ValueError(f"batch_size: {self.batch_size} does not divide evenly among {self.gpus} gpus")
        if self.sync_batchnorm and self.device == "cpu":
            raise ValueError("sync_batchnorm: SyncBatchNorm works on GPUs only (device is cpu)")
        return self

    @classmethod
    def preset(cls, name: str = "quick", **overrides: Any) -> "TrainConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose {' or '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # Small enough to learn visibly on 2 CPU cores in two or three minutes (about 2,000 steps at 32px).
    "quick": {},
    # Exactly the article's Config. The article reads data/faces/*.jpg; the preset trains on the built-in emoji so it
    # works offline: set dataset=folder data_path=data/faces for the original.
    "article": dict(
        image_size=96,
        batch_size=256,
        epochs=200,
        ngf=64,
        ndf=64,
        nz=100,
        lr_g=2e-4,
        lr_d=2e-4,
        beta1=0.5,
        d_every=1,
        g_every=5,
        save_every=1,
    ),
}


def cache_dir() -> Path:
    """Where rendered and downloaded datasets (and FID statistics) are kept between runs."""
    return Path(os.environ.get("GANBOARD_CACHE") or Path.home() / ".cache" / "ganboard")


def torchvision_root(cfg: TrainConfig) -> Path:
    return Path(cfg.data_path).expanduser() if cfg.data_path else cache_dir() / "torchvision"


def data_error(cfg: TrainConfig) -> tuple[str, str] | None:
    """(field, reason) when the run's data cannot train, as far as a look at the files tells: a torchvision set not
    there with download off, a folder with no images or fewer than a batch. Cheap enough for a form submit: files are
    counted, none is decoded. The worker still finds what only decoding shows (unreadable images)."""
    if cfg.dataset in TORCHVISION_FILES and not cfg.download:
        root = torchvision_root(cfg)
        if not any((root / name).is_file() for name in TORCHVISION_FILES[cfg.dataset]):
            return "data_path", (
                f"no {cfg.dataset} files under {str(root)!r} (looked for {TORCHVISION_FILES[cfg.dataset][0]}): "
                "set download to true or put the files there"
            )
    if cfg.dataset == "folder" and cfg.data_path:
        root = Path(cfg.data_path).expanduser()
        files = images = 0
        for _dir, _subdirs, names in os.walk(root):
            files += len(names)
            images += sum(os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS for n in names)
        if not images:
            return "data_path", (
                f"{cfg.data_path!r} holds no images ({files} files in the folder and its subfolders; "
                f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        if images < cfg.batch_size:
            return "batch_size", f"{cfg.batch_size} is more than the {images} images in {cfg.data_path!r}"
    return None


def form_fields() -> list[dict[str, Any]]:
    """The fields of TrainConfig as the dashboard form needs them: name, group, type, default, help, choices."""
    schema = TrainConfig.model_json_schema()
    fixed = {"dataset": list(DATASETS), "image_size": list(IMAGE_SIZES), "channels": [1, 3]}  # as the validators allow
    out = []
    for name, info in TrainConfig.model_fields.items():
        prop = schema["properties"][name]
        choices = prop.get("enum") or [v for a in prop.get("anyOf", []) for v in a.get("enum", [])] or None
        out.append(
            {
                "name": name,
                "group": (info.json_schema_extra or {}).get("group", "data"),
                "default": info.default,
                "help": info.description or "",
                "choices": fixed.get(name, choices),
                "type": info.annotation.__name__ if isinstance(info.annotation, type) else str(info.annotation),
            }
        )
    return out
