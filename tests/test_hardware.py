"""bf16 defaults: measured per device class (see trainer/hardware.py)."""

import os

import pytest
import torch

from app.runs.supervisor import cpu_share
from tests.harness import wait_for
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


def test_cpu_runs_share_the_cores_as_they_start_and_end(server):
    """The shared test server runs two at once. A run alone trains with every core; when a second starts, each trains
    with half (the first hears it with an acknowledgement); when the second ends, the first gets every core back."""
    cores = len(os.sched_getaffinity(0))
    assert cpu_share(1) == cores and cpu_share(2) == max(1, cores // 2) and cpu_share(4 * cores) == 1
    if cores < 2:
        pytest.skip("one core: every share is one thread")
    def log(run: dict) -> str:
        path = server.runs_dir / str(run["id"]) / "worker.log"
        return path.read_text() if path.exists() else ""

    first = server.create(epochs=1000)
    wait_for(lambda: f"on cpu with {cores} torch threads" in log(first), what="the first run on every core")
    second = server.create(epochs=1000)
    wait_for(lambda: f"on cpu with {cores // 2} torch threads" in log(second), what="the second run on half")
    assert f"--threads {cores // 2}" in log(second)
    wait_for(lambda: f"{cores // 2} torch threads now" in log(first), what="the first run to give up half")
    server.client.post(f"/api/runs/{second['id']}/cancel")
    server.wait_status(second["id"], "cancelled")
    wait_for(lambda: f"{cores} torch threads now" in log(first), what="the first run to get every core back")
    server.client.post(f"/api/runs/{first['id']}/cancel")
    server.wait_status(first["id"], "cancelled")


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_a_worker_and_its_ranks_get_openmps_passive_wait_unless_told_otherwise(given, expected):
    """trainer/__init__.py: OpenMP reads the policy when torch loads it, so it is set before `trainer.worker` imports
    torch (trainer.rank imports it at once), and the ranks torchrun starts inherit it; a value in the environment is kept."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = ("import sys, os, subprocess; import trainer.rank; assert 'torch' in sys.modules; "
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"OMP_WAIT_POLICY\"])'], "
            "capture_output=True, text=True).stdout.strip())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
