"""What happens at an epoch's end, off the training thread: scores, the sample grid, checkpoints and the report.

At an epoch's end the training thread only starts two copies: G and D into a free snapshot on the same device and,
when one is due, the resume state to the host. On a GPU they are queued on streams, ordered by events (no host sync);
on a CPU the weights and Adam's moments are copied by a thread of their own, which the next optimiser step waits for
(trainer/epoch_copies.py). Then it trains on. Three threads do the rest:

- the scorer, in epoch order: SWD and diversity of the snapshot's G, the grid of the fixed noise, whether this epoch
  is the best so far; it hands a copy of G to the FID thread when FID/KID is due and that thread is free;
- the FID thread: FID and KID of one epoch at a time, reported by a `ScoreMessage` whenever they are ready;
- the writer (trainer/writer.py): the grid, checkpoint files and resume.pt, then the report, in order.

On a CPU the scorer and the FID thread train nothing and share the cores with training: each runs one torch thread at
a lower priority (`SIDE_NICE`), so training slows by about their share and never stops. When the scorer falls behind
(a GPU trains an epoch in milliseconds), an epoch's end that finds no free snapshot is not scored: its checkpoint, if
one was due, goes with the next snapshot. The last epoch, and a stop, always wait for one.

The best checkpoint is chosen by a score that tracks quality at the sample size used: KID (unbiased) once three epochs
have one, SWD before that (FID from 256 images is strongly biased; see docs/quality.md).
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image

from trainer.checkpoint import Digest, host_copy, remove, save_best, save_nets, save_resume, stale_copies
from trainer.config import TrainConfig
from trainer.epoch_copies import EpochCopies
from trainer.evaluate import Evaluator
from trainer.files import atomic
from trainer.grid import grid_image
from trainer.protocol import CHECKPOINTS_DIR, SAMPLES_DIR, epoch_checkpoint_names, sample_name
from trainer.protocol import snapshot_checkpoint_names
from trainer.state import TrainState
from trainer.writer import Writer

log = logging.getLogger(__name__)

SIDE_NICE = 10  # a CPU thread at nice 10 gets ~1/10 of a core that a nice-0 training thread wants
KID_POINTS = 3  # epochs with a KID before KID, not SWD, chooses the best


class Sink(Protocol):
    def on_epoch(self, info: dict) -> None: ...
    def on_score(self, info: dict) -> None: ...


class Best:
    """The best epoch so far, and by which score; shared by the scorer and the FID thread. Its `state` is saved in
    resume.pt, so a resumed run keeps a better best it had."""

    def __init__(self, state: dict | None):
        state = state or {}
        self.lock = threading.Lock()
        self.swd: float | None = state.get("swd")
        self.kids: list[float] = list(state.get("kids", []))

    def state(self) -> dict:
        with self.lock:
            return {"swd": self.swd, "kids": list(self.kids)}

    def offer_swd(self, swd: float) -> bool:
        """True when this epoch's SWD makes it the best: the lowest so far while fewer than KID_POINTS have a KID."""
        with self.lock:
            better = self.swd is None or swd < self.swd
            self.swd = swd if better else self.swd
            return better and len(self.kids) < KID_POINTS

    def offer_kid(self, kid: float) -> bool:
        """True when this epoch's KID makes it the best: KID chooses from its KID_POINTS-th point, lower than all."""
        with self.lock:
            better = not self.kids or kid < min(self.kids)
            self.kids.append(kid)
            return better and len(self.kids) >= KID_POINTS


class _Copy:
    """A copy of G and D on the training device, refilled in place at each epoch's end it serves."""

    def __init__(self, st: TrainState):
        self.netg, self.netd = copy.deepcopy(st.netg), copy.deepcopy(st.netd)
        self.wait: Callable[[], None] = lambda: None  # on the thread that reads the copy, before it does
        self.epoch = self.step = 0

    def fill(self, st: TrainState, side: torch.cuda.Stream | None, copier: EpochCopies) -> None:
        pairs = [
            (mine, theirs)
            for net, into in ((st.netg, self.netg), (st.netd, self.netd))
            for mine, theirs in zip(into.state_dict().values(), net.state_dict().values())
        ]
        if side is None:  # the weights on a thread of their own, before the next step (trainer/epoch_copies.py)
            self.wait = copier.copy(pairs)
        else:  # after what training queued so far, and training's next step only after the copy read the weights
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                torch._foreach_copy_([m for m, _ in pairs], [t for _, t in pairs], non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(side)
            torch.cuda.current_stream().wait_stream(side)
            self.wait = lambda: torch.cuda.current_stream().wait_event(ready)  # the reader's stream, after the copy
        self.epoch, self.step = st.epoch, st.step

    def nets(self) -> tuple[dict, dict]:
        """G's and D's state_dicts on the host, to save."""
        return host_copy(self.netg.state_dict()), host_copy(self.netd.state_dict())


@dataclass
class _EpochEnd:
    """One epoch's end as the training thread leaves it to the scorer."""

    snap: _Copy
    copies: tuple[str, str] | None  # the numbered checkpoint, when due
    final: bool
    speed: Callable[[], tuple[float, float]]  # (images/s of training alone, seconds of the epoch), once known
    train_seconds: float  # training time so far, which FID/KID's budget is a share of
    resume: Callable[[], None] | None = None  # writes resume.pt, after this epoch's grid and copies (never before)


def _side_thread_setup(device: torch.device) -> None:
    """One torch thread at a lower priority on a CPU (per thread, on Linux), so training keeps the cores it uses."""
    if device.type == "cpu":
        torch.set_num_threads(1)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIDE_NICE)
        except OSError as e:
            log.info("side work at normal priority: %s", e)


class SideWork:
    """An epoch's end off the training thread (see the module docstring). `epoch_done` and `stopped` are called on the
    training thread; `finish` waits for everything (FID included) at the end of a run, `close` for what is written."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, sink: Sink, st: TrainState, evaluator: Evaluator,
                 amp: AbstractContextManager, slots: int = 2):  # fmt: skip
        self.cfg, self.sink, self.evaluator, self.amp, self.device = cfg, sink, evaluator, amp, st.device
        self.samples, self.checkpoints = run_dir / SAMPLES_DIR, run_dir / CHECKPOINTS_DIR
        self.samples.mkdir(parents=True, exist_ok=True)
        self.best = Best(st.best)
        self.free: queue.Queue[_Copy] = queue.Queue()
        for _ in range(slots):
            self.free.put(_Copy(st))
        self.side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.fixed_noise = st.fixed_noise
        self.writer = Writer()
        self.copier = EpochCopies(st)
        self.unreported: dict[str, Digest] = {}  # written by the writer, not reported yet (writer thread only)
        self.removed: list[str] = []
        self.due: tuple[str, str] | None = None  # a numbered checkpoint that found no free snapshot
        self.resumed_at = time.monotonic()
        self.error: BaseException | None = None
        self.scorer_jobs: queue.Queue[_EpochEnd | None] = queue.Queue()
        self.fid_jobs: queue.Queue[tuple | None] = queue.Queue(1)
        self.scoring: int | None = None  # the newest epoch handed to the FID thread, while `fid_pending`
        self.fid_pending = 0  # jobs handed to the FID thread and not done (the scorer's count, changed under a lock)
        self.fid_lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._loop, args=(self.scorer_jobs, self._score), name="scorer", daemon=True),
            threading.Thread(target=self._loop, args=(self.fid_jobs, self._fid, self._measure), name="fid",
                             daemon=True),  # fmt: skip
        ]
        for thread in self.threads:
            thread.start()

    # -- the training thread -------------------------------------------------------------------------------------------

    def epoch_done(self, st: TrainState, speed: Callable[[], tuple[float, float]], train_seconds: float, final: bool,
                   halted: bool) -> None:  # fmt: skip
        """Epoch st.epoch has ended (`final`: the run's last; `halted`: training stops here); `speed` gives its
        images/s and seconds once the device has reached its end, `train_seconds` is the training time so far."""
        self._raise()
        if st.epoch % self.cfg.save_every == 0 or final or halted:
            self.due = epoch_checkpoint_names(st.epoch)
        snap = self._take(st, wait=final or halted)
        if snap is None:
            return  # the scorer is behind: this epoch is not scored; a due checkpoint waits for the next snapshot
        copies, self.due = self.due, None
        resume = None
        if (copies or time.monotonic() - self.resumed_at >= self.cfg.save_seconds) and not (final or halted):
            resume = self._resume_job(st)  # at the end `finish` writes it, with the last epoch's best
        self.scorer_jobs.put(_EpochEnd(snap, copies, final, speed, train_seconds, resume))
        self.copier.start()  # the copies' bulk, now that this thread has queued them all

    def stopped(self, st: TrainState) -> None:
        """Training stops inside an epoch: G and D as the snapshot pair named for where, and resume.pt."""
        self._raise()
        snap = self._take(st, wait=True)
        names = snapshot_checkpoint_names(st.epoch + 1, st.step)
        self.copier.start()
        snap.wait()
        nets = snap.nets()
        self.free.put(snap)
        # Through the scorer, so that the files of the epochs it is still scoring are written before, not after
        self.scorer_jobs.put(lambda: self.writer.submit(lambda: self._write_nets(names, nets)))

    def finish(self, st: TrainState, wait_for_fid: bool) -> dict:
        """At the end of a run: wait for the scorer, the FID thread when `wait_for_fid` (a run that completed), write
        resume.pt with the best they found, and wait for the writer; returns what was written and not reported yet, for
        the final status."""
        self.scorer_jobs.put(None)
        self.threads[0].join()
        if wait_for_fid:
            self.fid_jobs.put(None)
            self.threads[1].join()
        self.writer.submit(self._resume_job(st))
        self.copier.start()
        self.writer.flush()
        self._raise()
        out = {"checkpoints": list(self.unreported), "digests": self._digests(), "removed": self.removed}
        self.unreported, self.removed = {}, []
        return out

    def close(self) -> None:
        self.copier.close()
        self.writer.close()

    def _take(self, st: TrainState, wait: bool) -> _Copy | None:
        try:
            snap = self.free.get(block=wait)
        except queue.Empty:
            return None
        snap.fill(st, self.side, self.copier)
        return snap

    def _resume_job(self, st: TrainState) -> Callable[[], None]:
        """A host copy of the resume state now (trainer/epoch_copies.py: most of it finishes off this thread); the
        returned job, run on the writer thread, writes it as resume.pt with the best as the scorer knows it then."""
        copied = self.copier.resume_state()
        self.resumed_at = time.monotonic()

        def job() -> None:
            state = copied()
            state["best"] = self.best.state()  # which may be after the state's epoch: never a worse best
            self.unreported |= save_resume(self.checkpoints, state)

        return job

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
        self.writer.check()

    # -- the scorer and the FID thread ---------------------------------------------------------------------------------

    def _loop(self, jobs: queue.Queue, work: Callable, first: Callable[[], None] | None = None) -> None:
        _side_thread_setup(self.device)
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if first is not None:
            with torch.cuda.stream(stream) if stream else nullcontext():
                first()
        while (job := jobs.get()) is not None:
            if self.error is not None:
                continue  # drain: the training thread raises the first error
            try:
                with torch.cuda.stream(stream) if stream else nullcontext():
                    work(job)
            except BaseException as e:
                log.exception("side work failed")
                self.error = e

    def _score(self, end: _EpochEnd | Callable[[], None]) -> None:
        if not isinstance(end, _EpochEnd):  # a stop's snapshot, in its place after the epochs before it
            end()
            return
        snap, epoch, step = end.snap, end.snap.epoch, end.snap.step
        try:
            snap.wait()
            scores: dict = self.evaluator.quick(snap.netg)
            with torch.no_grad(), self.amp:
                grid = grid_image(snap.netg(self.fixed_noise).float()).cpu()
            best = self.best.offer_swd(scores["swd"])
            if (end.final or not self.fid_pending) and self.evaluator.fid_due(epoch, end.train_seconds, end.final):
                with self.fid_lock:
                    self.fid_pending += 1
                    self.scoring = epoch
                self.fid_jobs.put((copy.deepcopy(snap.netg), host_copy(snap.netd.state_dict()), epoch, step, end.final))
            nets = snap.nets() if end.copies or best else None
            _sync(self.device)  # what this thread queued on the copy has run before training refills it
        finally:  # also after an error: a stop waits for a free snapshot
            self.free.put(snap)
        images_per_s, seconds = end.speed()
        scoring = self.scoring if self.fid_pending else None

        def job() -> None:
            name = sample_name(epoch)
            with atomic(self.samples / name) as tmp:
                Image.fromarray(grid.numpy()).save(tmp, format="png")
            if end.copies:
                self._write_nets(end.copies, nets)
            if best:
                self.unreported |= save_best(self.checkpoints, nets)
            if end.resume is not None:
                end.resume()
            self.sink.on_epoch(dict(epoch=epoch, step=step, sample=name, images_per_s=images_per_s, seconds=seconds,
                                    scoring=scoring, best_by="swd" if best else None, **scores, **self._report()))  # fmt: skip

        self.writer.submit(job)

    def _measure(self) -> None:
        try:
            self.evaluator.measure()
        except Exception as e:  # FID is a nicety: a run goes on without it
            log.warning("FID and KID are off: measuring their cost failed: %s: %s", type(e).__name__, e)
            self.evaluator.unavailable = str(e)

    def _fid(self, job: tuple) -> None:
        netg, netd, epoch, step, final = job
        if final and self.device.type == "cpu":  # training has ended: the last scoring may have every core
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        scores = self.evaluator.fid(netg)
        best = "kid" in scores and self.best.offer_kid(scores["kid"])
        nets = (host_copy(netg.state_dict()), netd) if best else None
        with self.fid_lock:
            self.fid_pending -= 1

        def report() -> None:
            if best:
                self.unreported |= save_best(self.checkpoints, nets)
            self.sink.on_score(dict(epoch=epoch, step=step, best_by="kid" if best else None, **scores, **self._report()))

        self.writer.submit(report)

    # -- the writer thread ---------------------------------------------------------------------------------------------

    def _write_nets(self, names: tuple[str, str], nets: tuple[dict, dict]) -> None:
        self.unreported |= save_nets(self.checkpoints, names, nets)
        stale = stale_copies(self.checkpoints, names, self.cfg.keep_last)
        remove(self.checkpoints, stale)
        self.removed += stale
        for name in stale:
            self.unreported.pop(name, None)

    def _report(self) -> dict:
        out = {"checkpoints": list(self.unreported), "digests": self._digests(), "removed": self.removed}
        self.unreported, self.removed = {}, []
        return out

    def _digests(self) -> dict:
        return {name: {"size": size, "sha256": sha} for name, (size, sha) in self.unreported.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.current_stream().synchronize()
