"""The article's D step and G step, and how a batch runs them: eagerly, or on a GPU replayed as CUDA graphs.

Schedule (the article): D every `d_every` batches on real -> 1 and detached fake -> 0, as two passes (one batch of both
would mix their BatchNorm statistics); G every `g_every` batches with the non-saturating loss (fake -> 1); Adam for
each. D returns logits, so the loss is BCEWithLogits. Each step returns its stats as one small tensor on the device;
the batch's row of `protocol.STATS` is composed from them, NaN where a net did not step.

On a GPU the step at these sizes waits on Python and kernel launches, not on arithmetic. `GraphedStep` captures each
step once as a CUDA graph (noise drawn inside it, Adam `capturable`) and replays it per batch: the same kernels on the
same tensors, so the schedule and BatchNorm semantics are exactly the eager ones. Capturing needs warm-up steps, which
train; the state they change (weights, BatchNorm statistics, Adam moments, the CUDA generator) is put back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import torch.nn.functional as F

from trainer.config import TrainConfig
from trainer.protocol import STATS
from trainer.state import TrainState

log = logging.getLogger(__name__)

D_STATS = ("loss_d", "loss_d_real", "loss_d_fake", "d_x", "d_g_z", "grad_d")
G_STATS = ("loss_g", "d_g_z", "grad_g")
WARMUP = 3  # eager steps on a side stream before a capture (cuDNN autotuning, Adam's state, the allocator)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], channels_last."""
    return images.float().div_(127.5).sub_(1).contiguous(memory_format=torch.channels_last)


def grad_norm(net: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all of `net`'s parameter gradients together, on the device (no host sync)."""
    return torch.nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None]).float()


def d_step(st: TrainState, real: torch.Tensor, nz: int, amp: AbstractContextManager) -> torch.Tensor:
    """One D step on a uint8 batch of real images and as many fakes; returns D_STATS."""
    st.opt_d.zero_grad(set_to_none=True)
    real = normalise(real)
    with torch.no_grad(), amp:
        fake = st.netg(torch.randn(len(real), nz, 1, 1, device=real.device))
    with amp:
        out_real, out_fake = st.netd(real), st.netd(fake)  # two passes: one batch would mix BatchNorm statistics
    loss_real = F.binary_cross_entropy_with_logits(out_real.float(), torch.ones_like(out_real, dtype=torch.float))
    loss_fake = F.binary_cross_entropy_with_logits(out_fake.float(), torch.zeros_like(out_fake, dtype=torch.float))
    (loss_real + loss_fake).backward()
    grad = grad_norm(st.netd)
    st.opt_d.step()
    d_x, d_g_z = torch.sigmoid(out_real.float()).mean(), torch.sigmoid(out_fake.float()).mean()
    return torch.stack([loss_real + loss_fake, loss_real, loss_fake, d_x, d_g_z, grad]).detach()


def g_step(st: TrainState, batch_size: int, nz: int, amp: AbstractContextManager) -> torch.Tensor:
    """One G step with the non-saturating loss; returns G_STATS."""
    st.opt_g.zero_grad(set_to_none=True)
    with amp:
        out = st.netd(st.netg(torch.randn(batch_size, nz, 1, 1, device=st.device)))
    loss_g = F.binary_cross_entropy_with_logits(out.float(), torch.ones_like(out, dtype=torch.float))
    # Gradients through D into G's weights only: D's weight gradients are neither computed nor accumulated. (Toggling
    # D's requires_grad instead aborted DDP processes at exit; see trainer/distributed.py.)
    torch.autograd.backward(loss_g, inputs=list(st.netg.parameters()))
    grad = grad_norm(st.netg)
    st.opt_g.step()
    return torch.stack([loss_g, torch.sigmoid(out.float()).mean(), grad]).detach()


class Step:
    """One batch of the article's schedule, eager: `step(i, real)` returns the batch's row of STATS on the device."""

    graphed = False

    def __init__(self, st: TrainState, cfg: TrainConfig, amp: AbstractContextManager):
        self.st, self.cfg, self.amp = st, cfg, amp
        self.nan = torch.tensor(float("nan"), device=st.device)

    def d(self, real: torch.Tensor) -> torch.Tensor:
        return d_step(self.st, real, self.cfg.nz, self.amp)

    def g(self) -> torch.Tensor:
        return g_step(self.st, self.cfg.batch_size, self.cfg.nz, self.amp)

    def __call__(self, i: int, real: torch.Tensor) -> torch.Tensor:
        stats: dict[str, torch.Tensor] = {}
        if i % self.cfg.d_every == 0:
            stats.update(zip(D_STATS, self.d(real)))
        if i % self.cfg.g_every == 0:
            stats = {**dict(zip(G_STATS, self.g())), **stats}  # D's d_g_z when both stepped, as the article logs
        return torch.stack([stats.get(name, self.nan) for name in STATS])


class GraphedStep(Step):
    """The same steps, each captured once as a CUDA graph and replayed; a batch is copied into the D graph's input."""

    graphed = True

    def __init__(self, st: TrainState, cfg: TrainConfig, amp: AbstractContextManager):
        super().__init__(st, cfg, amp)
        shape = (cfg.batch_size, cfg.channels, cfg.image_size, cfg.image_size)
        self.real = torch.zeros(shape, dtype=torch.uint8, device=st.device)
        with _put_back(st):
            self.d_graph, self.d_out = _capture(lambda: d_step(st, self.real, cfg.nz, amp))
            self.g_graph, self.g_out = _capture(lambda: g_step(st, cfg.batch_size, cfg.nz, amp))

    def d(self, real: torch.Tensor) -> torch.Tensor:
        self.real.copy_(real)
        self.d_graph.replay()
        return self.d_out  # overwritten by the next replay: __call__ copies it into the batch's row first

    def g(self) -> torch.Tensor:
        self.g_graph.replay()
        return self.g_out


def make_step(st: TrainState, cfg: TrainConfig, amp: AbstractContextManager) -> Step:
    """CUDA graphs on a GPU; eager on a CPU, and on a GPU where capture fails (logged once, with the reason)."""
    if _on_gpu(st):
        try:
            return GraphedStep(st, cfg, amp)
        except Exception as e:  # an op that cannot be captured, or too little memory for the graphs' pools
            log.warning("training eagerly: capturing the steps as CUDA graphs failed (%s: %s)", type(e).__name__, e)
            _eager_again(st)
    return Step(st, cfg, amp)


def _on_gpu(st: TrainState) -> bool:
    return st.device.type == "cuda"


def _eager_again(st: TrainState) -> None:
    """What a failed capture may leave behind, undone for the eager step: this thread on the default stream (not the
    capture's), and Adam capturable (a graphed Adam keeps its step count on the device; an eager one reads it on the
    host every step)."""
    if st.device.type == "cuda":
        torch.cuda.set_stream(torch.cuda.default_stream(st.device))
    for opt in (st.opt_g, st.opt_d):
        for group in opt.param_groups:
            group["capturable"] = False
        for state in opt.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].detach().to("cpu", torch.float32)


def _capture(step: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm `step` up on a side stream, then record it as a graph; returns the graph and its (static) output."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out


@contextmanager
def _put_back(st: TrainState) -> Iterator[None]:
    """Undo what the warm-up steps trained: weights, BatchNorm statistics, Adam moments (zeroed where the warm-up
    created them: a fresh Adam's state is zeros) and the CUDA generator. In place, since the graphs hold these tensors."""
    tensors = [t for net in (st.netg, st.netd) for t in net.state_dict().values()]
    saved = [t.clone() for t in tensors]
    moments = {p: {k: v.clone() for k, v in s.items()} for opt in (st.opt_g, st.opt_d) for p, s in opt.state.items()}
    rng = torch.cuda.get_rng_state(st.device)
    try:
        yield
    finally:
        with torch.no_grad():
            for t, value in zip(tensors, saved):
                t.copy_(value)
            for opt in (st.opt_g, st.opt_d):
                for p, s in opt.state.items():
                    for k, v in s.items():
                        if p in moments:
                            v.copy_(moments[p][k])
                        else:
                            v.zero_()
        torch.cuda.set_rng_state(rng, st.device)
