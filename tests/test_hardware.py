"""bf16 defaults: measured per device class (see trainer/hardware.py)."""

import os

import torch

from app.supervisor import cpu_threads
from trainer.config import TrainConfig
from trainer.hardware import cpu_has_bf16, uses_bf16


def test_bf16_defaults_follow_the_measurements(tmp_path):
    amx, plain = tmp_path / "amx", tmp_path / "plain"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(str(amx)) and not cpu_has_bf16(str(plain))
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert uses_bf16(TrainConfig.preset("article"), gpu) and not uses_bf16(TrainConfig.preset("quick"), gpu)
    assert uses_bf16(TrainConfig.preset("quick", bf16=True), cpu)
    assert not uses_bf16(TrainConfig.preset("article", bf16=False), gpu)


def test_concurrent_cpu_runs_share_the_cores(server):
    """The shared test server runs two at once, so each CPU worker gets half the cores as torch threads (one at
    least): two runs of two threads on 2 cores are 0.4x as fast as two of one (supervisor.cpu_threads)."""
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(1) == cores and cpu_threads(4 * cores) == 1
    run = server.create()
    assert server.wait_status(run["id"], "completed", "failed")["status"] == "completed"
    log = (server.runs_dir / str(run["id"]) / "worker.log").read_text()
    expected = max(1, cores // 2)
    assert f"--threads {expected}" in log and f"on cpu with {expected} torch threads" in log
