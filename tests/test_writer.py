"""The background writer: jobs run in order, a full queue holds the submitter back, a failure surfaces on the training
thread, and whatever was queued is written before the run reports its end."""

from __future__ import annotations

import threading

import pytest

from tests.test_trainer import TINY, ListSink
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.protocol import is_numbered
from trainer.writer import Writer


def test_jobs_run_in_order_and_flush_waits_for_them():
    done: list[int] = []
    release = threading.Event()
    with Writer(size=2) as writer:
        writer.submit(release.wait)  # holds the thread until every job below is queued
        for k in range(2):
            writer.submit(lambda k=k: done.append(k))
        late = threading.Thread(target=writer.submit, args=(lambda: done.append(2),))
        late.start()  # the queue is full: this submit waits for room
        assert done == [] and late.is_alive()
        release.set()
        late.join()
        writer.flush()
        assert done == [0, 1, 2]


def test_a_failed_job_skips_the_rest_and_is_raised_on_the_training_thread():
    done: list[int] = []
    writer = Writer()
    writer.submit(lambda: 1 / 0)
    writer.submit(lambda: done.append(1))
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: done.append(2))
    writer.close()
    assert done == []


def test_leaving_on_an_error_still_writes_what_was_queued():
    done: list[int] = []
    release = threading.Event()
    with pytest.raises(KeyError):
        with Writer() as writer:
            writer.submit(release.wait)
            writer.submit(lambda: done.append(1))
            release.set()
            raise KeyError("the training step failed")
    assert done == [1]


class FileCheckingSink(ListSink):
    """Records the order of reports and checks, when an epoch is reported, that its files are on disk."""

    def __init__(self, run_dir, stop, stop_after):
        super().__init__(stop, stop_after)
        self.run_dir, self.order = run_dir, []

    def on_epoch(self, info):
        assert (self.run_dir / "samples" / info["sample"]).is_file()
        assert all((self.run_dir / "checkpoints" / name).is_file() for name in info["checkpoints"])
        self.order.append(("epoch", info["epoch"]))
        super().on_epoch(info)

    def on_status(self, status, **info):
        self.order.append(("status", status))
        super().on_status(status, **info)


def test_every_epoch_is_on_disk_and_reported_before_a_cancelled_run_ends(tmp_path):
    cfg = TrainConfig(**{**TINY, "batch_size": 1024}, epochs=50, save_every=2)  # 4 batches per epoch
    stop = threading.Event()
    sink = FileCheckingSink(tmp_path, stop, stop_after=4 * 3 + 2)
    assert train(cfg, tmp_path, sink, stop=stop) == "cancelled"
    epochs = [e for kind, e in sink.order if kind == "epoch"]
    assert sink.order[0] == ("status", "running") and sink.order[-1] == ("status", "cancelled")
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 3
    numbered = [any(is_numbered(name) for name in e["checkpoints"]) for e in sink.epochs]
    assert numbered[:2] == [False, True]  # save_every=2
