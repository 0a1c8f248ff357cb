"""The copies an epoch's end takes (trainer/epoch_copies.py): the training thread goes on while a thread of its own
copies parameters and moments, and the copies are still the state at the epoch's end."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext

import torch

from tests.test_trainer import TINY, ListSink
from trainer.checkpoint import host_copy
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.protocol import CHECKPOINTS_DIR, RESUME, STATS
from trainer.epoch_copies import EpochCopies
from trainer.state import TrainState
from trainer.steps import Step

CFG = TrainConfig(**TINY, g_every=1)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _stepped_state(cfg: TrainConfig) -> tuple[TrainState, Step, torch.Tensor]:
    st = TrainState.build(cfg, torch.device("cpu"))
    step = Step(st, cfg, nullcontext())
    real = torch.randint(0, 256, (cfg.batch_size, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    step(0, real)  # Adam's moments exist from here on
    return st, step, real


def test_the_copy_is_the_epoch_ends_state_though_both_optimisers_step_at_once(monkeypatch):
    """The copying thread is held back; the next batch steps D and G right away: each optimiser's step waits for the
    copy, so the copy holds the parameters and moments from before it (without the hook it would hold the step's)."""
    st, step, real = _stepped_state(CFG)
    copies = EpochCopies(st)
    expected = host_copy(st.resume_state())
    started, foreach_copy = threading.Event(), torch._foreach_copy_

    def slow_copy(*args, **kwargs):
        started.set()
        time.sleep(0.5)  # wide enough that the step below would come first if nothing held it
        return foreach_copy(*args, **kwargs)

    monkeypatch.setattr(torch, "_foreach_copy_", slow_copy)
    copied = copies.resume_state()
    copies.start()
    assert started.wait(30)
    step(1, real)
    state = copied()
    assert _same(state, expected)
    assert not _same(host_copy(st.resume_state()), expected)  # the step did change them


def test_a_failed_copy_raises_where_it_is_written_and_does_not_hold_training(monkeypatch):
    st, step, real = _stepped_state(CFG)
    copies = EpochCopies(st)

    def broken(*args, foreach_copy=torch._foreach_copy_, **kwargs):
        if threading.current_thread().name == "epoch-copy":  # the parameters' and moments' copy, not the rest
            raise MemoryError("no room for the copy")
        return foreach_copy(*args, **kwargs)

    monkeypatch.setattr(torch, "_foreach_copy_", broken)
    copied = copies.resume_state()
    copies.start()
    step(1, real)  # returns: the hook does not wait for a copy that failed
    try:
        copied()
    except MemoryError as e:
        assert "no room" in str(e)
    else:
        raise AssertionError("the copy's error was lost")


def test_a_run_resumed_from_an_epoch_ends_resume_pt_trains_the_same_batches(tmp_path, monkeypatch):
    """Through the real loop: the resume.pt written after epoch 1 (its bulk copied off the training thread while
    epoch 2 trained) resumes to the same losses as the run that went on."""
    import trainer.sidework as sidework

    cfg = TrainConfig(**TINY, epochs=3, g_every=2, save_every=1)
    kept: list[dict] = []
    save = sidework.save_resume

    def keep(ckpt_dir, state):
        kept.append(state)
        return save(ckpt_dir, state)

    monkeypatch.setattr(sidework, "save_resume", keep)
    whole = ListSink()
    train(cfg, tmp_path / "whole", whole)
    after_epoch_1 = next(s for s in kept if s["epoch"] == 1)
    (tmp_path / "again" / CHECKPOINTS_DIR).mkdir(parents=True)
    torch.save(after_epoch_1, tmp_path / "again" / CHECKPOINTS_DIR / RESUME)
    again = ListSink()
    assert train(cfg, tmp_path / "again", again, resume=True) == "completed"
    first = again.rows["step"][0]
    assert first == after_epoch_1["step"] + 1
    for key in STATS:
        assert again.rows[key] == whole.rows[key][first - 1 :], key
