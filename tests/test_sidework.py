"""An epoch's end off the training thread (trainer/sidework.py): training goes on while the scorer and the FID thread
work, their reports come in epoch order, and the best checkpoint is chosen by a score that says which it is."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.test_trainer import TINY, ListSink
from trainer import steps
from trainer.config import TrainConfig
from trainer.evaluate import Evaluator
from trainer.loop import train
from trainer.models import build_discriminator, build_generator
from trainer.protocol import BEST, checkpoint_label
from trainer.sidework import KID_POINTS, Best
from trainer.state import TrainState

CFG = dict(TINY, batch_size=1024, epochs=6)  # 4 batches an epoch


class CountingSink(ListSink):
    """Counts the batch rows that arrive after `mark()`."""

    def __init__(self):
        super().__init__()
        self.since = None
        self.more = threading.Event()

    def mark(self):
        self.since = len(self.rows.get("step", []))

    def on_batch(self, rows):
        super().on_batch(rows)
        if self.since is not None and len(self.rows["step"]) >= self.since + 8:  # two epochs more
            self.more.set()


def test_training_goes_on_while_the_scorer_is_stuck(tmp_path, monkeypatch):
    """The scorer blocks on epoch 1 until training has reported two more epochs of rows: with the scoring on the
    training thread, those rows could never come and the run would hang (the test's timeout fails it)."""
    sink, quick = CountingSink(), Evaluator.quick

    def stuck(self, netg):
        if not sink.more.is_set():
            sink.mark()
            assert sink.more.wait(120), "training stopped while the scorer worked"
        return quick(self, netg)

    monkeypatch.setattr(Evaluator, "quick", stuck)
    assert train(TrainConfig(**CFG), tmp_path, sink) == "completed"
    epochs = [e["epoch"] for e in sink.epochs]
    # In order; an epoch that ended while both snapshots were taken (the scorer stuck on 1, 2 waiting) is not scored,
    # and the last epoch waits for a snapshot.
    assert epochs == sorted(set(epochs)) and epochs[:2] == [1, 2] and epochs[-1] == 6, epochs
    assert sink.epochs[0]["images_per_s"] > 0


def test_fid_of_an_epoch_comes_later_while_the_next_epochs_are_reported(tmp_path, monkeypatch):
    """A slow FID (here: blocked until epoch 3 is reported) does not hold the epochs after it; its score message names
    the epoch it scored, the epochs meanwhile say which is being scored, and the last epoch always gets one."""
    sink, release = ListSink(), threading.Event()
    scored: list[int] = []

    def fid(self, netg):
        scored.append(len(scored) + 1)
        if len(scored) == 1:
            assert release.wait(120)
        return {"fid": 50.0 - len(scored), "kid": 0.05 - 0.01 * len(scored), "fid_at": "75 px, CPU"}

    class Releasing(ListSink):
        def on_epoch(self, info):
            sink.on_epoch(info)
            if info["epoch"] == 3:
                release.set()

        def on_score(self, info):
            sink.on_score(info)

    monkeypatch.setattr(Evaluator, "measure", lambda self: setattr(self, "per_image", 0.0))
    monkeypatch.setattr(Evaluator, "fid", fid)
    cfg = TrainConfig(**{**CFG, "fid": True}, eval_every=1)
    assert train(cfg, tmp_path, Releasing()) == "completed"
    assert [e["epoch"] for e in sink.epochs] == [1, 2, 3, 4, 5, 6]
    first = sink.scores[0]
    assert first["epoch"] == 1 and first["fid"] == 49.0
    assert [e["scoring"] for e in sink.epochs[1:3]] == [1, 1]  # epochs 2 and 3 were reported while 1 was scored
    assert sink.scores[-1]["epoch"] == 6  # the last epoch always has its FID
    assert all("fid" not in e or e.get("fid") is None for e in sink.epochs)


def test_best_is_chosen_by_swd_until_three_kids_then_by_kid():
    best = Best(None)
    assert best.offer_swd(100.0) and best.offer_swd(90.0) and not best.offer_swd(95.0)
    assert not best.offer_kid(0.05) and not best.offer_kid(0.06)  # fewer than KID_POINTS: SWD still chooses
    assert best.offer_swd(80.0)
    assert not best.offer_kid(0.07)  # the third KID is not below the first two
    assert not best.offer_swd(10.0)  # KID chooses now, however good the SWD
    assert best.offer_kid(0.01)
    restored = Best(best.state())  # what resume.pt keeps
    assert len(restored.kids) == KID_POINTS + 1 and not restored.offer_kid(0.02)


def test_the_best_label_names_its_score():
    assert checkpoint_label(BEST[0], epoch=12, by="swd", score=36.51) == "best SWD 36.51 (epoch 12)"
    assert checkpoint_label(BEST[1], epoch=40, by="kid", score=0.0123) == "best KID 0.0123 (epoch 40)"


def test_the_best_pair_loads_and_a_resume_keeps_a_better_best(tmp_path):
    cfg = TrainConfig(**{**CFG, "epochs": 2})
    first = ListSink()
    train(cfg, tmp_path, first)
    assert first.epochs[0]["best_by"] == "swd"  # the first epoch is the best so far
    ckpt = tmp_path / "checkpoints"
    build_generator(cfg).load_state_dict(torch.load(ckpt / BEST[0], weights_only=True))
    build_discriminator(cfg).load_state_dict(torch.load(ckpt / BEST[1], weights_only=True))
    resume = torch.load(ckpt / "resume.pt", weights_only=True)
    assert resume["best"]["swd"] == min(e["swd"] for e in first.epochs)

    resume["best"]["swd"] = 0.0  # a best no real epoch beats
    torch.save(resume, ckpt / "resume.pt")
    kept = (ckpt / BEST[0]).read_bytes()
    second = ListSink()
    train(cfg.model_copy(update={"epochs": 4}), tmp_path, second, resume=True)
    assert [e["best_by"] for e in second.epochs] == [None, None]
    assert (ckpt / BEST[0]).read_bytes() == kept


def test_keep_last_keeps_the_newest_numbered_copies_and_says_what_it_removed(tmp_path):
    sink = ListSink()
    train(TrainConfig(**CFG, keep_last=2, save_every=1), tmp_path, sink)
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert {n for n in names if n[5:9].isdigit()} == {"netg_0005.pth", "netd_0005.pth", "netg_0006.pth", "netd_0006.pth"}
    removed = [n for e in sink.epochs for n in e["removed"]]
    assert sorted(removed) == sorted(f"net{x}_{e:04d}.pth" for e in range(1, 5) for x in "gd")


def test_a_failed_capture_leaves_d_trainable_and_adam_not_capturable(monkeypatch):
    """The CUDA graphs' fallback, on the CPU: the capture is replaced by one that fails inside G's step; the eager step
    that follows must train D and G with a plain Adam."""
    cfg = TrainConfig(**CFG)
    st = TrainState.build(cfg, torch.device("cpu"))
    for opt in (st.opt_g, st.opt_d):
        for group in opt.param_groups:
            group["capturable"] = True  # as on a GPU

    class Graphed(steps.Step):
        """Fails as a capture can: inside G's step."""

        def __init__(self, st, cfg, amp):
            super().__init__(st, cfg, amp)
            forward = st.netg.forward
            st.netg.forward = lambda z: (_ for _ in ()).throw(RuntimeError("operation not permitted when capturing"))
            try:
                steps.g_step(st, 4, cfg.nz, amp)
            finally:
                st.netg.forward = forward

    monkeypatch.setattr(steps, "GraphedStep", Graphed)
    monkeypatch.setattr(steps, "_on_gpu", lambda st: True)
    step = steps.make_step(st, cfg, torch.autocast("cpu", enabled=False))
    assert type(step) is steps.Step and not step.graphed
    assert all(p.requires_grad for p in st.netd.parameters())
    assert not any(g["capturable"] for opt in (st.opt_g, st.opt_d) for g in opt.param_groups)
    real = torch.randint(0, 255, (1024, 3, 32, 32), dtype=torch.uint8)
    before = [p.detach().clone() for p in st.netd.parameters()]
    assert torch.isfinite(step(0, real)[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, st.netd.parameters()))


@pytest.mark.parametrize("raises", [False, True])
def test_g_step_gives_d_its_gradients_back_whatever_happens(raises, monkeypatch):
    st = TrainState.build(TrainConfig(**CFG), torch.device("cpu"))
    if raises:
        monkeypatch.setattr(st.netd, "forward", lambda x: 1 / 0)
    try:
        steps.g_step(st, 4, 16, torch.autocast("cpu", enabled=False))
    except ZeroDivisionError:
        pass
    assert all(p.requires_grad for p in st.netd.parameters())


def test_on_a_cpu_the_scorer_runs_one_torch_thread_at_side_priority(tmp_path, monkeypatch):
    """The scorer trains nothing: it gives way to training (the writer stays at training's priority: at SIDE_NICE it
    cost training about 5% in alternating runs, docs/quality.md)."""
    import os

    import trainer.sidework as sidework

    seen = []

    def scored(self, netg, quick=Evaluator.quick):
        seen.append((os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), torch.get_num_threads()))
        return quick(self, netg)

    monkeypatch.setattr(Evaluator, "quick", scored)
    assert train(TrainConfig(**{**CFG, "epochs": 1}), tmp_path, ListSink(), threads=lambda: 2) == "completed"
    assert seen == [(os.getpriority(os.PRIO_PROCESS, 0) + sidework.SIDE_NICE, 1)], seen
