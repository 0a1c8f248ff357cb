"""Issue 21: one run on two processes (gloo on the CPU) through the real server: torchrun starts the ranks, rank 0
reports, a stop reaches every rank, a rank that dies fails the run by name, and the checkpoints are one process's."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import torch

from tests.harness import TINY, wait_for
from trainer.config import TrainConfig
from trainer.models import build_discriminator, build_generator

TWO = dict(gpus=2, batch_size=128)  # 32 steps per epoch of the procedural set


def _steps(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 10**6}).json()["step"]


def _rank_pid(run_dir: Path, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"trainer.rank" in cmdline and str(run_dir).encode() in cmdline:
                if f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def test_two_ranks_train_one_run_with_equal_parameters(server):
    run = server.create(**TWO)
    done = server.wait_status(run["id"], "completed", "failed", timeout=300)
    assert done["status"] == "completed", done["error"]
    assert _steps(server, run["id"]) == list(range(1, 2 * 32 + 1))  # every global step once, reported by rank 0 alone
    run_dir = server.runs_dir / str(run["id"])

    def digests():  # rank 0 logs its digest after it reported `completed`: the line may follow the status
        found = re.findall(r"rank (\d) INFO parameters sha256 (\w+)", (run_dir / "worker.log").read_text())
        return found if len(found) == 2 else None

    found = wait_for(digests, timeout=60, what="both ranks' parameter digests in worker.log")
    assert sorted(r for r, _ in found) == ["0", "1"] and found[0][1] == found[1][1]
    cfg = TrainConfig(**{**TINY, **TWO})
    netg, netd = build_generator(cfg), build_discriminator(cfg)  # the article's stacks (tests/test_models.py)
    netg.load_state_dict(torch.load(run_dir / "checkpoints" / "netg.pth", weights_only=True))  # strict: unwrapped
    netd.load_state_dict(torch.load(run_dir / "checkpoints" / "netd.pth", weights_only=True))


def test_a_cancel_stops_every_rank_and_one_process_resumes_the_steps(server, tmp_path):
    from trainer.loop import train

    run = server.create(**TWO, epochs=1000)
    wait_for(lambda: server.run(run["id"])["step"] > 0, timeout=300, what="the first steps")
    server.client.post(f"/api/runs/{run['id']}/cancel")
    cancelled = server.wait_status(run["id"], "cancelled", "failed", timeout=120)
    assert cancelled["status"] == "cancelled" and cancelled["error"] is None, cancelled["error"]
    assert _steps(server, run["id"]) == list(range(1, cancelled["step"] + 1))

    rows: list[int] = []

    class Sink:
        def on_batch(self, r): rows.extend(r["step"])  # noqa: E704
        def on_epoch(self, info): ...  # noqa: E704
        def on_score(self, info): ...  # noqa: E704
        def on_stopping(self, step): ...  # noqa: E704
        def on_status(self, status, **info): ...  # noqa: E704

    cfg = TrainConfig(**{**TINY, **TWO, "gpus": 1, "epochs": 1000, "max_steps": cancelled["step"] + 3})
    status = train(cfg, server.runs_dir / str(run["id"]), Sink(), resume=True, stop=threading.Event(), threads=lambda: 1)
    assert status == "completed" and rows == [cancelled["step"] + k for k in (1, 2, 3)]


def test_a_rank_killed_fails_the_run_naming_it(server):
    run = server.create(**TWO, epochs=1000)
    run_dir = server.runs_dir / str(run["id"])
    wait_for(lambda: server.run(run["id"])["step"] > 0, timeout=300, what="the first steps")
    os.kill(wait_for(lambda: _rank_pid(run_dir, 1), what="rank 1"), signal.SIGKILL)
    failed = server.wait_status(run["id"], "failed", "completed", timeout=120)
    assert failed["status"] == "failed"
    assert "rank 1" in failed["error"] and "SIGKILL" in failed["error"], failed["error"]


def test_a_batch_that_does_not_divide_among_the_gpus_is_a_422(server):
    r = server.client.post("/api/runs", json={"config": {**TINY, "gpus": 2, "batch_size": 255}})
    assert r.status_code == 422 and "batch_size" in r.text and "2 gpus" in r.text, r.text


def test_sync_batchnorm_is_for_gpus_and_shares_the_nets_tensors(server):
    from trainer.distributed import _sync_batchnorm

    r = server.client.post("/api/runs", json={"config": {**TINY, "gpus": 2, "batch_size": 256, "sync_batchnorm": True}})
    assert r.status_code == 422 and "sync_batchnorm" in r.text and "GPUs only" in r.text, r.text
    netg = build_generator(TrainConfig(**TINY))
    view = _sync_batchnorm(netg)  # the DDP wrapper's: SyncBatchNorm on the same tensors; the net keeps BatchNorm
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in view.modules())
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in netg.modules())
    mine, theirs = netg.state_dict(keep_vars=True), view.state_dict(keep_vars=True)
    assert list(mine) == list(theirs) and all(mine[k] is theirs[k] for k in mine)


def test_the_ranks_read_disjoint_shards_that_make_up_the_global_batch():
    from trainer.data import batches_for

    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    one = list(batches_for(images, 8, torch.device("cpu"), print).epoch(perm))
    shards = [list(batches_for(images, 8, torch.device("cpu"), print, rank=r, ranks=2).epoch(perm)) for r in (0, 1)]
    assert len(one) == len(shards[0]) == len(shards[1]) == 5
    for (i, whole), (_, a), (_, b) in zip(one, *shards):
        assert len(a) == len(b) == 4 and torch.equal(torch.cat([a, b]), whole)  # global batch i, split in two


def test_the_rank_killed_from_outside_is_the_cause_not_the_one_torchrun_stopped_after_it(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from trainer.worker import first_cause

    def failure(rank: int, exitcode: int, timestamp: int) -> ProcessFailure:
        f = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file=str(tmp_path / "none"))
        f.timestamp = timestamp
        return f

    killed, stopped = failure(1, -signal.SIGKILL, 7), failure(0, -signal.SIGTERM, 7)  # torchrun's seconds tie
    assert first_cause({0: stopped, 1: killed})[0] == 1
    assert first_cause({0: failure(0, 1, 8), 1: failure(1, 1, 7)})[0] == 1  # two exits: the earlier
    assert first_cause({0: failure(0, 1, 9), 1: failure(1, -signal.SIGTERM, 7)})[0] == 0  # an exit before a stop
    assert first_cause({0: failure(0, -signal.SIGTERM, 7), 1: failure(1, -signal.SIGTERM, 7)})[0] == 0
