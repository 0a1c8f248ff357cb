"""A stop inside an epoch leaves a snapshot named for where it stopped (epoch, step), and only the newest one."""

from __future__ import annotations

import threading

import torch

from tests.test_trainer import TINY, ListSink
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.protocol import epoch_checkpoint_names, is_snapshot, snapshot_checkpoint_names


def cancel_after(cfg, run_dir, rows, resume=False):
    stop = threading.Event()
    sink = ListSink(stop, stop_after=rows)
    assert train(cfg, run_dir, sink, resume=resume, stop=stop) == "cancelled"
    return sink


def test_a_cancel_inside_an_epoch_writes_a_snapshot_and_replaces_the_older_one(tmp_path):
    cfg = TrainConfig(**TINY, epochs=5)  # 16 batches per epoch
    first = cancel_after(cfg, tmp_path, 3)
    status, info = first.statuses[-1]
    step = info["step"]
    assert step < 16 and info["epoch"] == 0
    g, d = snapshot_checkpoint_names(1, step)
    assert sorted(info["checkpoints"]) == sorted(["netg.pth", "netd.pth", g, d, "resume.pt"])
    ckpt = tmp_path / "checkpoints"
    assert {p.name for p in ckpt.iterdir()} == set(info["checkpoints"])
    assert torch.load(ckpt / "resume.pt", weights_only=True)["step"] == step

    second = cancel_after(cfg, tmp_path, 3, resume=True)
    later = second.statuses[-1][1]["step"]
    assert later > step
    snapshots = sorted(p.name for p in ckpt.iterdir() if is_snapshot(p.name))
    assert snapshots == sorted(snapshot_checkpoint_names(1 + later // 16, later))
    assert first.statuses[0][1]["bf16"] in (True, False)


def test_max_steps_inside_an_epoch_ends_with_a_snapshot_and_keeps_the_epoch_series(tmp_path):
    cfg = TrainConfig(**TINY, epochs=5, save_every=1, max_steps=16 + 5)
    sink = ListSink()
    assert train(cfg, tmp_path, sink) == "completed"
    status, info = sink.statuses[-1]
    assert info["step"] == 21 and info["epoch"] == 1
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert set(epoch_checkpoint_names(1)) <= names  # the finished epoch's copies stay
    assert set(snapshot_checkpoint_names(2, 21)) <= names
    assert set(info["checkpoints"]) == {"netg.pth", "netd.pth", *snapshot_checkpoint_names(2, 21), "resume.pt"}
