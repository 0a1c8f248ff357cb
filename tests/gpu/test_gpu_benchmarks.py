"""On the GPU, the benchmarks whose tables belong in docs/gpu.md: throughput, a run's efficiency against its step-only
rate (targets >= 0.9 quick, >= 0.8 article), and one run on every GPU (torchrun, DDP over NCCL) against one."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.gpu.report import show
from tests.harness import REPO

BENCH = REPO / "bench"


@pytest.mark.timeout(1800)
def test_the_throughput_table():
    print("throughput (bench/train_throughput.py --device cuda --rounds 2):", flush=True)
    table = subprocess.run([sys.executable, str(BENCH / "train_throughput.py"), "--device", "cuda", "--rounds", "2"])
    assert show("throughput table", table.returncode == 0)


@pytest.mark.timeout(1800)
def test_a_runs_efficiency_meets_its_target():
    print("a run's efficiency (bench/run_efficiency.py --device cuda):", flush=True)
    efficiency = subprocess.run([sys.executable, str(BENCH / "run_efficiency.py"), "--device", "cuda"],
                                capture_output=True, text=True)  # fmt: skip
    print(efficiency.stdout, efficiency.stderr[-2000:] if efficiency.returncode else "", flush=True)
    rows = [line.split() for line in efficiency.stdout.splitlines() if line.split()[:1] in (["quick"], ["article"])]
    met = [show(f"run efficiency, {name} preset", float(ratio) >= float(target), f"{ratio} of the step-only rate")
           for name, _, _, _, ratio, _, target, *_ in rows]  # fmt: skip
    assert show("run efficiency table", efficiency.returncode == 0 and len(rows) == 2) and all(met)


@pytest.mark.timeout(1800)
def test_one_run_on_every_gpu():
    print(f"one run on every GPU ({torch.cuda.device_count()}): bench/ddp_scaling.py --device cuda", flush=True)
    scaling = subprocess.run([sys.executable, str(BENCH / "ddp_scaling.py"), "--device", "cuda"])
    assert show("DDP scaling (torchrun, NCCL)", scaling.returncode == 0)
