"""One run on several processes (`gpus: N`): the ranks torchrun starts, as the training loop sees them.

The worker (trainer/worker.py) runs torchrun's launcher in-process; each rank runs `python -m trainer.rank`, the
training loop with D and G each wrapped in DistributedDataParallel (NCCL on GPUs, gloo on the CPU). `batch_size` is the
global batch: each rank trains on its own `batch_size // N` images of every global batch, a disjoint shard of the
epoch's permutation (drawn from the run's seed, the same on every rank, so a resume continues it exactly, with any N).

Rank 0 alone reports, writes and evaluates; the others train with a `NullSink` and `IdleSideWork`. A stop is agreed:
every `STOP_EVERY` steps the ranks all-reduce their stop flags, so all of them stop after the same step.

Why G's step does not toggle D's `requires_grad` here: under DDP that aborted a process at exit in 1 of 6 runs. Instead
G's loss is back-propagated into G's parameters only (`inputs=`), through the unwrapped D: no gradient of D is computed
and none is all-reduced for nothing. Under DDP the step stays eager (see docs/gpu.md).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
from contextlib import AbstractContextManager

import torch
import torch.distributed as dist

from trainer.config import TrainConfig
from trainer.state import TrainState
from trainer.steps import Step, d_step, g_step

log = logging.getLogger(__name__)

STOP_EVERY = 4  # steps between the ranks' agreements on a stop: one tiny all-reduce (a host sync on a GPU) each


class Ranks:
    """This process's place in the run: rank, world size, and the agreements the loop needs. One process: trivial."""

    rank, world = 0, 1

    def agree_stop(self, stop: bool, step: int) -> bool:
        return stop

    def wrap(self, st: TrainState, cfg: TrainConfig, amp: AbstractContextManager) -> Step | None:
        return None

    def close(self) -> None:
        pass


class ProcessGroup(Ranks):
    """A rank of a run torchrun started: RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous in the environment."""

    def __init__(self, device: torch.device):
        self.rank, self.world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.device, self.st = device, None
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)

    def agree_stop(self, stop: bool, step: int) -> bool:
        """True on every rank once any rank was asked to stop, at a step they all share (a multiple of STOP_EVERY)."""
        if step % STOP_EVERY:
            return False
        flag = torch.tensor([float(stop)], device=self.device)
        dist.all_reduce(flag, dist.ReduceOp.MAX)
        return bool(flag.item())

    def wrap(self, st: TrainState, cfg: TrainConfig, amp: AbstractContextManager) -> Step:
        own_noise(self.rank, cfg.seed, st.step)
        self.st = st
        return DistributedStep(st, cfg, amp, self.world)

    def close(self) -> None:
        """After training: logs a digest of this rank's parameters (the same on every rank, which the tests check)."""
        if self.st is not None:
            log.info("parameters sha256 %s", parameters_digest(self.st))
        dist.destroy_process_group()


def parameters_digest(st: TrainState) -> str:
    """sha256 of G's and D's parameters, bit for bit (not BatchNorm's running statistics, which differ per rank)."""
    digest = hashlib.sha256()
    for net in (st.netg, st.netd):
        for p in net.parameters():
            digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def own_noise(rank: int, seed: int, step: int) -> None:
    """Rank 0 keeps the generator it has (fresh or from resume.pt, so one process resumes it as it was); the others draw
    their own noise from the seed, the rank and the step (they all start from the same generator state)."""
    if rank:
        torch.manual_seed((seed * 1_000_003 + rank * 7919 + step) % 2**63)


class DistributedStep(Step):
    """The article's schedule on one rank's share of the batch. D's step runs D wrapped in DDP (its gradients
    all-reduced; G only samples, without gradients); G's step runs G wrapped in DDP through the unwrapped D, and
    `g_step` back-propagates into G's parameters alone. Eager: `graphed` is False."""

    def __init__(self, st: TrainState, cfg: TrainConfig, amp: AbstractContextManager, world: int):
        from torch.nn.parallel import DistributedDataParallel as DDP  # imports torch._dynamo: ~4.6 s, so only here

        super().__init__(st, cfg.model_copy(update={"batch_size": cfg.batch_size // world}), amp)
        if cfg.sync_batchnorm and st.device.type != "cuda":
            raise ValueError("sync_batchnorm: SyncBatchNorm works on GPUs only (this run trains on the CPU)")
        ids = [st.device.index] if st.device.type == "cuda" else None
        view = _sync_batchnorm if cfg.sync_batchnorm else lambda net: net
        self.d_view = dataclasses.replace(st, netd=DDP(view(st.netd), device_ids=ids))
        self.g_view = dataclasses.replace(st, netg=DDP(view(st.netg), device_ids=ids))

    def d(self, real: torch.Tensor) -> torch.Tensor:
        return d_step(self.d_view, real, self.cfg.nz, self.amp)

    def g(self) -> torch.Tensor:
        return g_step(self.g_view, self.cfg.batch_size, self.cfg.nz, self.amp)


def _sync_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """`net` with SyncBatchNorm layers sharing its parameters and running statistics, for the DDP wrapper only: the
    net itself keeps BatchNorm, so the snapshots that rank 0 scores on side threads never start a collective."""

    def shallow(module: torch.nn.Module) -> torch.nn.Module:
        out = copy.copy(module)  # the same parameter and buffer tensors; a container of its own
        out._modules = {name: shallow(child) for name, child in module._modules.items()}
        return out

    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(shallow(net))


class NullSink:
    """What a rank other than 0 reports to: nothing."""

    def on_batch(self, rows: dict) -> None: ...
    def on_epoch(self, info: dict) -> None: ...
    def on_score(self, info: dict) -> None: ...
    def on_stopping(self, step: int) -> None: ...
    def on_status(self, status: str, **info) -> None: ...


class IdleSideWork:
    """A rank other than 0 writes, scores and saves nothing at an epoch's end."""

    def epoch_done(self, *args, **kw) -> None: ...
    def stopped(self, st: TrainState) -> None: ...
    def finish(self, st: TrainState, wait_for_fid: bool) -> dict:
        return {}

    def close(self) -> None: ...
