"""The copies an epoch's end takes of the training state (G and D for the scorer, the resume state for resume.pt),
made without holding up the training thread.

They must be the state exactly at the epoch's end, and on a CPU the copying is what costs: the article's nets carry
25 MB of parameters and 51 MB of Adam moments, 2 ms and 11-20 ms to copy on the 2-core machine, where issue 17 allows
the training thread 5 ms for all of an epoch's end. But parameters and moments change only in an optimiser's step, and
the next batch's forwards and backward come first. So the training thread copies the rest at once (BatchNorm's running
statistics, which a forward changes, step counts, the generators' states: kilobytes); a thread of its own copies the
parameters and moments; and each optimiser's next step waits until that copy is done (a step pre-hook, registered
once: with nothing in flight it returns at once).

On a GPU the copies are queued on streams instead (trainer/sidework.py `_Copy.fill`, `host_copy(pinned=True)`): a
graphed step does not call the optimisers from Python, so no hook could hold it back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait

import torch

from trainer.checkpoint import host_copy
from trainer.state import TrainState

Pairs = list[tuple[torch.Tensor, torch.Tensor]]  # (into, from)


class EpochCopies:
    """Copies of `st`'s tensors taken between steps, on a CPU finished off the training thread (see the module).
    `copy` and `resume_state` queue copies; `start` starts the queued ones, once the training thread has queued all of
    an epoch's end (a thread copying beside it would slow its Python down)."""

    def __init__(self, st: TrainState):
        self.st = st
        self.cpu = st.device.type == "cpu"
        self.queued: Pairs = []
        self.done: Future[None] = Future()  # when the queued copies are done
        self.pending: list[Future] = []  # started, maybe not done (this object is the training thread's; only the
        # functions `copy` and `resume_state` return are for other threads)
        if self.cpu:
            for opt in (st.opt_g, st.opt_d):
                opt.register_step_pre_hook(self._before_step)

    def copy(self, pairs: Pairs) -> Callable[[], None]:
        """Queue copying each (into, from) pair as the tensors are now; returns a function that waits until the copy
        is done (raising its error), for any thread. On a CPU only."""
        stepped = {t.data_ptr() for t in _stepped(self.st)}
        _copy([(into, t) for into, t in pairs if t.data_ptr() not in stepped])
        self.queued += [(into, t) for into, t in pairs if t.data_ptr() in stepped]
        return self.done.result

    def resume_state(self) -> Callable[[], dict]:
        """A host copy of the resume state as it is now; returns a function (for any thread) that waits for it and
        gives it."""
        if not self.cpu:
            state = host_copy(self.st.resume_state(), pinned=True)
            ready = torch.cuda.Event()
            ready.record()
            return lambda: (ready.synchronize(), state)[1]
        pairs: Pairs = []
        state = host_copy(self.st.resume_state(), copy=lambda into, t: pairs.append((into, t)))
        copied = self.copy(pairs)
        return lambda: (copied(), state)[1]

    def start(self) -> None:
        """Start copying what was queued, on a thread of its own."""
        if not self.queued:
            return
        pairs, done, self.queued, self.done = self.queued, self.done, [], Future()
        self.pending.append(done)
        threading.Thread(target=_copy_into, args=(pairs, done), name="epoch-copy", daemon=True).start()

    def close(self) -> None:
        """Wait for the copies in flight (a thread still copying when the process exits would abort it)."""
        self._before_step()

    def _before_step(self, *_) -> None:
        if not (self.queued or self.pending):
            return  # every step but the first after an epoch's end
        self.start()
        wait(self.pending)
        self.pending = []


def _copy(pairs: Pairs) -> None:
    if not pairs:
        return
    with torch.no_grad():
        torch._foreach_copy_([into for into, _ in pairs], [t.detach() for _, t in pairs])


def _copy_into(pairs: Pairs, done: Future) -> None:
    try:
        torch.set_num_threads(1)  # memory-bound: a second thread gains little and would take a core from training
        _copy(pairs)
        done.set_result(None)
    except BaseException as e:
        done.set_exception(e)


def _stepped(st: TrainState) -> Iterator[torch.Tensor]:
    """The tensors only an optimiser's step changes: parameters and Adam's state."""
    for net in (st.netg, st.netd):
        yield from net.parameters()
    for opt in (st.opt_g, st.opt_d):
        for state in opt.state.values():
            yield from (v for v in state.values() if isinstance(v, torch.Tensor))
