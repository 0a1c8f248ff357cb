"""The article's DCGAN training loop, headless: it reports to a Sink and knows nothing of HTTP or terminals.

Schedule (the article): D every `d_every` batches on real -> 1 and detached fake -> 0; G every `g_every` batches with the
non-saturating loss (fake -> 1); Adam(lr, (beta1, 0.999)) for each. D returns logits, so the loss is BCEWithLogits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from trainer.checkpoint import load_user_weights, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import load_images
from trainer.models import build_discriminator, build_generator
from trainer.protocol import STATS

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1  # how often per-batch stats are read back from the device (one host sync per chunk)
SAMPLES = 64


class Sink(Protocol):
    def on_batch(self, rows: dict[str, list]) -> None: ...
    def on_epoch(self, info: dict) -> None: ...
    def on_status(self, status: str, **info) -> None: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"device: {name!r} asked for, but no CUDA GPU is visible (use cpu or auto)")
        if (device.index or 0) >= count:
            raise ValueError(f"device: {name!r} asked for, but only {count} GPU(s) are visible")
    return device


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bfloat16 autocast: on by default on CUDA; on CPU only when asked for (see README, Speed)."""
    return cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"


class _Recorder:
    """Keeps per-batch stats on the device and hands them to the sink in columnar chunks."""

    def __init__(self, sink: Sink):
        self.sink, self.meta, self.stats, self.last = sink, [], [], time.monotonic()

    def add(self, step: int, epoch: int, batch: int, stats: torch.Tensor) -> None:
        self.meta.append((step, epoch, batch, time.time()))
        self.stats.append(stats)
        if time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.meta:
            return
        values = torch.stack(self.stats).tolist()  # the one host sync of this chunk
        rows: dict[str, list] = {k: [m[i] for m in self.meta] for i, k in enumerate(("step", "epoch", "batch", "time"))}
        for j, name in enumerate(STATS):
            rows[name] = [None if v[j] != v[j] else v[j] for v in values]  # NaN (did not step) -> None
        self.meta, self.stats = [], []
        self.sink.on_batch(rows)


def train(
    cfg: TrainConfig, run_dir: Path, sink: Sink, *, resume: bool = False, stop: threading.Event | None = None
) -> str:
    """Train `cfg` into `run_dir`; returns "completed" or "cancelled". Errors are reported to the sink, then raised."""
    try:
        return _train(cfg, Path(run_dir), sink, resume, stop or threading.Event())
    except Exception as e:
        error = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        sink.on_status("failed", error=error, traceback=traceback.format_exc()[-4000:])
        raise


def _train(cfg: TrainConfig, run_dir: Path, sink: Sink, resume: bool, stop: threading.Event) -> str:
    samples_dir, ckpt_dir = run_dir / "samples", run_dir / "checkpoints"
    samples_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # all cores: one thread instead of two is 0.54x
    else:
        torch.backends.cudnn.benchmark = True
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(cfg, device) else nullcontext()
    torch.manual_seed(cfg.seed)

    images = load_images(cfg, log=log.warning)
    n_batches, bs = len(images) // cfg.batch_size, cfg.batch_size
    if n_batches == 0:
        raise ValueError(f"batch_size: {bs} is larger than the dataset ({len(images)} images)")
    if device.type == "cuda":
        images = images.pin_memory()

    netg = build_generator(cfg).to(device, memory_format=torch.channels_last)
    netd = build_discriminator(cfg).to(device, memory_format=torch.channels_last)
    for net, path in ((netg, cfg.netg_init), (netd, cfg.netd_init)):
        if path:
            net.load_state_dict(load_user_weights(path))
    opt_g = torch.optim.Adam(netg.parameters(), cfg.lr_g, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(netd.parameters(), cfg.lr_d, betas=(cfg.beta1, 0.999))
    ones = torch.ones(bs, device=device)
    zeros = torch.zeros(bs, device=device)
    nan = torch.tensor(float("nan"), device=device)
    fixed_noise = torch.randn(SAMPLES, cfg.nz, 1, 1, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    step, start_epoch, start_batch, perm = 0, 0, 0, None

    if resume:
        state = torch.load(ckpt_dir / "resume.pt", map_location=device, weights_only=True)
        netg.load_state_dict(state["netg"])
        netd.load_state_dict(state["netd"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, start_epoch, start_batch, perm = state["step"], state["epoch"], state["batch"], state["perm"]
        fixed_noise = state["fixed_noise"].to(device)
        torch.set_rng_state(state["rng_cpu"])
        data_gen.set_state(state["rng_data"])
        if device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def to_device(batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(device, non_blocking=True).float().div_(127.5).sub_(1)
        return x.contiguous(memory_format=torch.channels_last)

    def noise() -> torch.Tensor:
        return torch.randn(bs, cfg.nz, 1, 1, device=device)

    def train_step(i: int, real: torch.Tensor) -> torch.Tensor:
        loss_d = loss_d_real = loss_d_fake = loss_g = d_x = d_g_z = nan
        if i % cfg.d_every == 0:
            opt_d.zero_grad(set_to_none=True)
            with torch.no_grad(), amp:
                fake = netg(noise())
            with amp:
                out_real, out_fake = netd(real), netd(fake)  # two passes: one batch would mix BatchNorm statistics
            loss_d_real = F.binary_cross_entropy_with_logits(out_real.float(), ones)
            loss_d_fake = F.binary_cross_entropy_with_logits(out_fake.float(), zeros)
            (loss_d_real + loss_d_fake).backward()
            opt_d.step()
            loss_d = loss_d_real + loss_d_fake
            d_x, d_g_z = torch.sigmoid(out_real.float()).mean(), torch.sigmoid(out_fake.float()).mean()
        if i % cfg.g_every == 0:
            opt_g.zero_grad(set_to_none=True)
            netd.requires_grad_(False)  # G's step needs gradients through D, not of D's weights
            with amp:
                out = netd(netg(noise()))
            loss_g = F.binary_cross_entropy_with_logits(out.float(), ones)
            loss_g.backward()
            netd.requires_grad_(True)
            opt_g.step()
            if i % cfg.d_every != 0:
                d_g_z = torch.sigmoid(out.float()).mean()
        return torch.stack([loss_d, loss_d_real, loss_d_fake, loss_g, d_x, d_g_z]).detach()

    def checkpoint(epoch: int, batch: int, perm: torch.Tensor | None, label: int) -> list[str]:
        """Save the state before (epoch, batch): resuming from it runs exactly the batches not yet run."""
        state = dict(
            netg=netg.state_dict(), netd=netd.state_dict(), opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(),
            step=step, epoch=epoch, batch=batch, perm=perm, fixed_noise=fixed_noise.cpu(),
            rng_cpu=torch.get_rng_state(), rng_data=data_gen.get_state(),
            rng_cuda=torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        )  # fmt: skip
        return save_checkpoint(ckpt_dir, label, netg, netd, state)

    total_steps = min(cfg.epochs * n_batches, cfg.max_steps or cfg.epochs * n_batches)
    sink.on_status(
        "running", step=step, epoch=start_epoch, total_steps=total_steps, total_epochs=cfg.epochs,
        batches_per_epoch=n_batches, device=str(device),
    )  # fmt: skip
    recorder = _Recorder(sink)
    netg.train()
    netd.train()

    for epoch in range(start_epoch, cfg.epochs):
        if perm is None:
            perm = torch.randperm(len(images), generator=data_gen)
        t0, done = time.perf_counter(), 0
        for i in range(start_batch, n_batches):
            real = to_device(images[perm[i * bs : (i + 1) * bs]])
            stats = train_step(i, real)
            step, done = step + 1, done + 1
            recorder.add(step, epoch + 1, i, stats)
            if stop.is_set() or step >= total_steps:
                break
        recorder.flush()
        train_seconds = time.perf_counter() - t0
        halted = stop.is_set() or step >= total_steps
        saved: list[str] = []
        if i == n_batches - 1:  # the epoch is complete: sample grid, maybe checkpoint
            sample = f"epoch_{epoch + 1:04d}.png"
            with torch.no_grad(), amp:
                grid = netg(fixed_noise).float()
            save_image(grid, samples_dir / (sample + ".tmp"), nrow=8, normalize=True, value_range=(-1, 1), format="png")
            os.replace(samples_dir / (sample + ".tmp"), samples_dir / sample)
            if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs or halted:
                saved = checkpoint(epoch + 1, 0, None, epoch + 1)
            sink.on_epoch(
                dict(epoch=epoch + 1, step=step, sample=sample, checkpoints=saved,
                     images_per_s=done * bs / train_seconds, seconds=time.perf_counter() - t0)
            )  # fmt: skip
        elif halted:
            saved = checkpoint(epoch, i + 1, perm, epoch + 1)
        if halted:
            status = "cancelled" if stop.is_set() else "completed"
            sink.on_status(status, step=step, epoch=epoch + 1 if i == n_batches - 1 else epoch, checkpoints=saved)
            return status
        perm, start_batch = None, 0

    sink.on_status("completed", step=step, epoch=cfg.epochs, checkpoints=[])
    return "completed"
