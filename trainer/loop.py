"""The article's DCGAN training loop, headless: it reports to a Sink and knows nothing of HTTP or terminals.

In the shape of pytorch/examples' dcgan/main.py and nanoGPT's train.py: set up (device, data, `TrainState`, the step),
then one loop that reads top to bottom. The D and G steps are in trainer/steps.py, the state and resume.pt in
trainer/state.py; epoch-end files are written by a background `Writer`, so the training thread never waits on a disk.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from trainer.checkpoint import checkpoint_names, host_copy, save_best, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import DatasetError, batches_for, load_images
from trainer.evaluate import Evaluator
from trainer.hardware import configure, resolve_device, uses_bf16
from trainer.protocol import (
    CHECKPOINTS_DIR, RESUME, SAMPLES_DIR, STATS, epoch_checkpoint_names, sample_name, snapshot_checkpoint_names,
)  # fmt: skip
from trainer.state import TrainState
from trainer.steps import D_STATS, G_STATS, make_step
from trainer.writer import Writer

log = logging.getLogger(__name__)

# How often per-batch stats are read back from the device (one host sync per chunk) and sent: 4 times a second is live
# to a person, and against 10 it halves what the server spends storing and fanning out (bench/fanout.py).
FLUSH_SECONDS = 0.25


class Sink(Protocol):
    """Where a run reports. on_batch and on_status are called from the training thread; on_epoch from the writer's
    thread, once that epoch's files are on disk, in epoch order and before the run's final status."""

    def on_batch(self, rows: dict[str, list]) -> None: ...
    def on_epoch(self, info: dict) -> None: ...
    def on_status(self, status: str, **info) -> None: ...


def train(
    cfg: TrainConfig,
    run_dir: Path,
    sink: Sink,
    *,
    resume: bool = False,
    stop: threading.Event | None = None,
    threads: int | None = None,
) -> str:
    """Train `cfg` into `run_dir`; returns "completed" or "cancelled". Errors are reported to the sink, then raised.
    `threads`: CPU threads for torch (default: all cores; the supervisor shares them among concurrent CPU runs)."""
    try:
        return _train(cfg, Path(run_dir), sink, resume, stop or threading.Event(), threads)
    except DatasetError as e:  # resuming would fail the same way; the traceback is for the worker log, not the page
        sink.on_status("failed", error=str(e), resumable=False)
        raise
    except Exception as e:
        error = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        sink.on_status("failed", error=error, traceback=traceback.format_exc()[-4000:])
        raise


def _train(
    cfg: TrainConfig, run_dir: Path, sink: Sink, resume: bool, stop: threading.Event, threads: int | None
) -> str:
    device = resolve_device(cfg.device)
    configure(device, threads)
    log.info("training on %s with %d torch threads", device, torch.get_num_threads())
    bf16 = uses_bf16(cfg, device)
    # On a GPU without the autocast weight cache, which CUDA graphs cannot hold on to.
    amp = torch.autocast(device.type, torch.bfloat16, cache_enabled=device.type == "cpu") if bf16 else nullcontext()
    torch.manual_seed(cfg.seed)
    images = load_images(cfg, log=log.warning)
    if len(images) < cfg.batch_size:
        raise DatasetError(f"batch_size: {cfg.batch_size} is larger than the dataset ({len(images)} images)")
    data = batches_for(images, cfg.batch_size, device, log=log.info)
    st = TrainState.build(cfg, device)
    if resume:
        st.load(run_dir / CHECKPOINTS_DIR / RESUME)
    step = make_step(st, cfg, amp)
    total_steps = min(cfg.epochs * data.count, cfg.max_steps or cfg.epochs * data.count)
    sink.on_status(
        "running", step=st.step, epoch=st.epoch, total_steps=total_steps, total_epochs=cfg.epochs,
        batches_per_epoch=data.count, device=str(device), bf16=bf16,
    )  # fmt: skip
    recorder, files = _Recorder(sink, cfg), _EpochFiles(run_dir, sink, device, amp)
    evaluator, training_started = Evaluator(cfg, images, device), time.perf_counter()
    st.netg.train()
    st.netd.train()

    with Writer() as writer:
        while st.epoch < cfg.epochs:
            if st.perm is None:
                st.perm = torch.randperm(len(images), generator=st.data_gen)
            started, first = (_mark(device), time.perf_counter()), st.batch  # device and wall clock
            for i, real in data.epoch(st.perm, st.batch):
                recorder.add(st.step + 1, st.epoch + 1, i, step(i, real))
                st.step, st.batch = st.step + 1, i + 1
                if stop.is_set() or st.step >= total_steps:
                    break
            recorder.flush()
            halted = stop.is_set() or st.step >= total_steps
            copies = None
            if st.batch == data.count:  # the epoch is complete: its grid, and a checkpoint every save_every epochs
                st.epoch, st.batch, st.perm = st.epoch + 1, 0, None
                scores = evaluator(st.netg, st.epoch, time.perf_counter() - training_started - evaluator.spent)
                # A new best FID is also a checkpoint, so that resume.pt never lags behind the best it knows of.
                best = "fid" in scores and (st.best_fid is None or scores["fid"] < st.best_fid)
                if best:
                    st.best_fid = scores["fid"]
                if st.epoch % cfg.save_every == 0 or st.epoch == cfg.epochs or halted or best:
                    copies = epoch_checkpoint_names(st.epoch)
                trained = (data.count - first) * cfg.batch_size
                writer.submit(files.epoch_job(st, copies, best, trained, started, scores))
            elif halted:  # stopped inside an epoch: a snapshot, named for where
                copies = snapshot_checkpoint_names(st.epoch + 1, st.step)
                writer.submit(files.checkpoint_job(st, copies))
            if halted:
                writer.flush()
                status = "cancelled" if stop.is_set() else "completed"
                saved = checkpoint_names(copies) if copies else []
                sink.on_status(status, step=st.step, epoch=st.epoch, checkpoints=saved)
                return status
    sink.on_status("completed", step=st.step, epoch=cfg.epochs, checkpoints=[])
    return "completed"


class NonFinite(ValueError):
    """A step produced NaN or inf: training stops there (its error is the run's error)."""


class _Recorder:
    """Keeps per-batch stats on the device and hands them to the sink in columnar chunks.

    Reading a chunk back is also where a NaN or inf is found, with no extra sync: the rows before it are sent, then
    `NonFinite` is raised, before anything (a checkpoint included) is written of the broken state. A NaN is expected
    only where a net did not step by the schedule (batch i: D when i % d_every == 0, G when i % g_every == 0)."""

    def __init__(self, sink: Sink, cfg: TrainConfig):
        self.sink, self.cfg, self.meta, self.stats, self.last = sink, cfg, [], [], time.monotonic()

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
        meta, broken = self.meta, self._first_non_finite(values)
        if broken is not None:
            meta, values = meta[: broken[0]], values[: broken[0]]
        rows: dict[str, list] = {k: [m[i] for m in meta] for i, k in enumerate(("step", "epoch", "batch", "time"))}
        for j, name in enumerate(STATS):
            rows[name] = [None if v[j] != v[j] else v[j] for v in values]  # NaN (did not step) -> None
        self.meta, self.stats = [], []
        if meta:
            self.sink.on_batch(rows)
        if broken is not None:
            raise NonFinite(f"non-finite {broken[1]} at step {broken[2]}")

    def _first_non_finite(self, values: list[list[float]]) -> tuple[int, str, int] | None:
        """(row index, stat name, step) of the first value the steps that ran should have made finite and did not."""
        for k, ((step, _, batch, _), row) in enumerate(zip(self.meta, values)):
            ran = (D_STATS if batch % self.cfg.d_every == 0 else ()) + (G_STATS if batch % self.cfg.g_every == 0 else ())
            for name, v in zip(STATS, row):
                if (name in ran and not math.isfinite(v)) or math.isinf(v):
                    return k, name, step
        return None


def _mark(device: torch.device) -> float | torch.cuda.Event:
    """A point on the device's timeline: on a GPU a CUDA event, so that taking one never waits for the GPU."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _wait(mark: float | torch.cuda.Event) -> None:
    """Until the device has reached `mark`."""
    if isinstance(mark, torch.cuda.Event):
        mark.synchronize()


def _seconds(start: float | torch.cuda.Event, end: float | torch.cuda.Event) -> float:
    """From mark `start` to mark `end`, once the device has reached `end`."""
    _wait(end)
    return start.elapsed_time(end) / 1000 if isinstance(end, torch.cuda.Event) else end - start


class _EpochFiles:
    """The writer's jobs at an epoch's end. The training thread takes host copies (from a GPU asynchronously: they are
    ready once the GPU reaches the mark taken after them); the job waits for them, encodes and writes, then reports."""

    def __init__(self, run_dir: Path, sink: Sink, device: torch.device, amp: AbstractContextManager):
        self.samples, self.checkpoints = run_dir / SAMPLES_DIR, run_dir / CHECKPOINTS_DIR
        self.sink, self.device, self.amp, self.pinned = sink, device, amp, device.type == "cuda"
        self.samples.mkdir(parents=True, exist_ok=True)

    def checkpoint_job(self, st: TrainState, copies: tuple[str, str]) -> Callable[[], None]:
        state, ready = host_copy(st.resume_state(), self.pinned), _mark(self.device)

        def job() -> None:
            _wait(ready)
            save_checkpoint(self.checkpoints, copies, state)

        return job

    def epoch_job(self, st: TrainState, copies: tuple[str, str] | None, best: bool, images: int, started: tuple,
                  scores: dict[str, float | str]) -> Callable[[], None]:  # fmt: skip
        """The grid of the fixed noise (G in training mode, as the article draws it), the checkpoint if `copies` names
        one, G and D as the best checkpoint if `best` (its FID is the lowest so far; `copies` then names one too), then
        on_epoch with the epoch's speed (`images` trained since the marks `started`: device, wall clock) and its
        quality `scores`."""
        trained = _mark(self.device)
        with torch.no_grad(), self.amp:
            grid = host_copy(grid_image(st.netg(st.fixed_noise).float()), self.pinned)
        state = host_copy(st.resume_state(), self.pinned) if copies else None
        ready, epoch, step = _mark(self.device), st.epoch, st.step

        def job() -> None:
            _wait(ready)
            name = sample_name(epoch)
            Image.fromarray(grid.numpy()).save(self.samples / (name + ".tmp"), format="png")
            os.replace(self.samples / (name + ".tmp"), self.samples / name)
            saved = save_checkpoint(self.checkpoints, copies, state) if copies else []
            if best:
                saved += save_best(self.checkpoints, state)
            self.sink.on_epoch(
                dict(epoch=epoch, step=step, sample=name, checkpoints=saved,
                     images_per_s=images / _seconds(started[0], trained), seconds=time.perf_counter() - started[1],
                     **scores)
            )  # fmt: skip

        return job


def grid_image(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Images in [-1, 1] as one uint8 [H, W, 3] grid, pixel for pixel what torchvision's
    save_image(images, nrow=8, normalize=True, value_range=(-1, 1)) writes (black 2px gaps), made on the device."""
    n, c, h, w = images.shape
    cols, rows = min(nrow, n), -(-n // min(nrow, n))
    x = images.expand(-1, 3, -1, -1) if c == 1 else images
    x = x.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    x = torch.nn.functional.pad(x, (0, padding, 0, padding))  # a gap right of and below each image
    x = torch.cat([x, x.new_zeros(rows * cols - n, *x.shape[1:])])  # an incomplete last row
    x = x.view(rows, cols, 3, h + padding, w + padding).permute(0, 3, 1, 4, 2).reshape(rows * (h + padding), -1, 3)
    return torch.nn.functional.pad(x, (0, 0, padding, 0, padding, 0))  # and the gaps above and left of the first
