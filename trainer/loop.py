"""The article's DCGAN training loop, headless: it reports to a Sink and knows nothing of HTTP or terminals.

In the shape of pytorch/examples' dcgan/main.py and nanoGPT's train.py: set up (device, data, `TrainState`, the step),
then one loop that reads top to bottom. The D and G steps are in trainer/steps.py, the state and resume.pt in
trainer/state.py; what happens at an epoch's end (scores, the grid, checkpoints) runs off this thread
(trainer/sidework.py), so training never waits for it: a run's wall clock is its steps'.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import torch

from trainer.config import TrainConfig
from trainer.data import DatasetError, batches_for, load_images
from trainer.distributed import IdleSideWork, Ranks
from trainer.evaluate import Evaluator
from trainer.hardware import configure, resolve_device, uses_bf16
from trainer.protocol import CHECKPOINTS_DIR, RESUME, STATS
from trainer.sidework import SideWork
from trainer.state import TrainState
from trainer.steps import D_STATS, G_STATS, make_step

log = logging.getLogger(__name__)

# How often per-batch stats are read back from the device (one host sync per chunk) and sent: 4 times a second is live
# to a person, and against 10 it halves what the server spends storing and fanning out (bench/fanout.py).
FLUSH_SECONDS = 0.25


class Sink(Protocol):
    """Where a run reports. on_batch, on_stopping and on_status are called from the training thread; on_epoch and
    on_score from the writer's thread, once their files are on disk: epochs in order, a score (FID/KID of an earlier
    epoch) when it is ready, all before the run's final status."""

    def on_batch(self, rows: dict[str, list]) -> None: ...
    def on_epoch(self, info: dict) -> None: ...
    def on_score(self, info: dict) -> None: ...
    def on_stopping(self, step: int) -> None: ...
    def on_status(self, status: str, **info) -> None: ...


def train(
    cfg: TrainConfig,
    run_dir: Path,
    sink: Sink,
    *,
    resume: bool = False,
    stop: threading.Event | None = None,
    threads: Callable[[], int | None] | None = None,
    ranks: Ranks | None = None,
) -> str:
    """Train `cfg` into `run_dir`; returns "completed" or "cancelled". Errors are reported to the sink, then raised.
    `threads()`: CPU threads for torch, asked at the start (None: all cores) and, on a CPU, after each batch report
    (None: as they are): the worker's follows the share of the cores the server sends (WsSink.cpu_threads).
    `ranks`: this process's place among the run's processes (trainer/distributed.py); one process by default."""
    try:
        return _train(cfg, Path(run_dir), sink, resume, stop or threading.Event(), threads, ranks or Ranks())
    except DatasetError as e:  # resuming would fail the same way; the traceback is for the worker log, not the page
        sink.on_status("failed", error=str(e), resumable=False)
        raise
    except Exception as e:
        error = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        sink.on_status("failed", error=error, traceback=traceback.format_exc()[-4000:])
        raise


def _train(
    cfg: TrainConfig, run_dir: Path, sink: Sink, resume: bool, stop: threading.Event,
    threads: Callable[[], int | None] | None, ranks: Ranks,
) -> str:
    device = resolve_device(cfg.device)
    configure(device, threads and threads())
    log.info("training on %s with %d torch threads", device, torch.get_num_threads())
    bf16 = uses_bf16(cfg, device)
    # With the autocast weight cache, on a GPU too: each autocast region here is one forward pass inside a step (inside
    # the captured graph, when graphed), so the cached casts never outlive the weights they were cast from; a cache
    # held across replays (make_graphed_callables under an outer autocast) is what CUDA graphs cannot have.
    amp = torch.autocast(device.type, torch.bfloat16) if bf16 else nullcontext()
    torch.manual_seed(cfg.seed)
    images = load_images(cfg, log=log.warning)
    if len(images) < cfg.batch_size:
        raise DatasetError(f"batch_size: {cfg.batch_size} is larger than the dataset ({len(images)} images)")
    data = batches_for(images, cfg.batch_size, device, log=log.info, rank=ranks.rank, ranks=ranks.world)
    st = TrainState.build(cfg, device)
    if resume:
        st.load(run_dir / CHECKPOINTS_DIR / RESUME)
    step = ranks.wrap(st, cfg, amp) or make_step(st, cfg, amp)
    total_steps = min(cfg.epochs * data.count, cfg.max_steps or cfg.epochs * data.count)
    sink.on_status(
        "running", step=st.step, epoch=st.epoch, total_steps=total_steps, total_epochs=cfg.epochs,
        batches_per_epoch=data.count, device=str(device), bf16=bf16, graphed=step.graphed,
    )  # fmt: skip
    recorder = _Recorder(sink, cfg, threads if device.type == "cpu" else None)
    training = 0.0  # seconds of training so far
    side = SideWork(cfg, run_dir, sink, st, Evaluator(cfg, images, device), amp) if ranks.rank == 0 else IdleSideWork()
    st.netg.train()
    st.netd.train()
    stopping = False  # asked to stop, as every rank agreed
    try:
        while st.epoch < cfg.epochs:
            if st.perm is None:
                st.perm = torch.randperm(len(images), generator=st.data_gen)
            started, first = (_mark(device), time.perf_counter()), st.batch  # device and wall clock
            for i, real in data.epoch(st.perm, st.batch):
                recorder.add(st.step + 1, st.epoch + 1, i, step(i, real))
                st.step, st.batch = st.step + 1, i + 1
                stopping = ranks.agree_stop(stop.is_set(), st.step)
                if stopping or st.step >= total_steps:
                    break
            recorder.flush()
            training += time.perf_counter() - started[1]
            halted = stopping or st.step >= total_steps
            if stopping:
                sink.on_stopping(st.step)
            if st.batch == data.count:  # the epoch is complete: its scores, grid and checkpoints, off this thread
                st.epoch, st.batch, st.perm = st.epoch + 1, 0, None
                speed = _speed(started, _mark(device), (data.count - first) * cfg.batch_size)
                final = st.epoch == cfg.epochs or (halted and not stopping)
                side.epoch_done(st, speed, training, final=final, halted=halted)
            elif halted:  # stopped inside an epoch: a snapshot, named for where
                side.stopped(st)
            if halted:
                break
        status = "cancelled" if stopping else "completed"
        files = side.finish(st, wait_for_fid=status == "completed")
        sink.on_status(status, step=st.step, epoch=st.epoch, **files)
        return status
    finally:
        side.close()


def _speed(started: tuple, trained: float | torch.cuda.Event, images: int) -> Callable[[], tuple[float, float]]:
    """An epoch's (images/s, seconds) of training alone, from its first batch to its last: asked for on the side thread,
    which waits for the device to reach the end mark."""
    return lambda: (images / max(_seconds(started[0], trained), 1e-9), _seconds(started[0], trained))


class NonFinite(ValueError):
    """A step produced NaN or inf: training stops there (its error is the run's error)."""


class _Recorder:
    """Keeps per-batch stats on the device and hands them to the sink in columnar chunks.

    Reading a chunk back is also where a NaN or inf is found, with no extra sync: the rows before it are sent, then
    `NonFinite` is raised, before anything (a checkpoint included) is written of the broken state. A NaN is expected
    only where a net did not step by the schedule (batch i: D when i % d_every == 0, G when i % g_every == 0)."""

    def __init__(self, sink: Sink, cfg: TrainConfig, threads: Callable[[], int | None] | None = None):
        self.sink, self.cfg, self.meta, self.stats, self.last = sink, cfg, [], [], time.monotonic()
        self.threads = threads

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
            self._follow_threads()
        if broken is not None:
            raise NonFinite(f"non-finite {broken[1]} at step {broken[2]}")

    def _follow_threads(self) -> None:
        """Train with the CPU threads `threads()` gives now. Here, on the training thread: torch's thread count is
        OpenMP's, which is per thread."""
        if self.threads and (threads := self.threads()) and threads != torch.get_num_threads():
            log.info("%d torch threads now (the CPU runs training share the cores)", threads)
            torch.set_num_threads(threads)

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
