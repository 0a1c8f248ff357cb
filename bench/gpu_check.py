"""The one script a person with a GPU runs to know GANboard's CUDA path is sound (about 4 minutes on one H100).

    PYTHONPATH=/tmp/site python3 bench/gpu_check.py        # /tmp/site: the project's own dependencies, see docs/gpu.md

It runs the checks in tests/gpu/ (pytest, marked `gpu`), in this order, each printing `ok` or `FAIL` and its figures:

1. An article-preset checkpoint loads into the article's own NetG/NetD and computes what ours computes.
2. Graphed and eager steps give the same losses over 50 steps from one seed (fp32/TF32 and bf16), with D-only,
   G-only and D+G batches in the schedule.
3. `make_step` returns the graphed step on this GPU (a failed capture falls back to eager, logged).
4. Through the real server and worker processes, on the GPU: a tiny run trains, is cancelled, resumes, is cancelled
   again, and /api/runs/<id>/metrics holds every step 1..N exactly once. Start-up of the quick preset, twice (a cold and
   a warm emoji cache): POST -> first batch stored -> first sample grid stored.
5. The throughput table (bench/train_throughput.py --device cuda), and a run's efficiency (bench/run_efficiency.py
   --device cuda: whole runs against their step-only rate, targets >= 0.9 quick, >= 0.8 article).
6. One run on every GPU it sees (bench/ddp_scaling.py --device cuda: torchrun, DDP over NCCL), against one GPU.

On a machine without CUDA every check is skipped (tests/test_models.py loads the article's checkpoints on the CPU): it
prints "no CUDA device" and exits 0. Any failed check exits 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("test_gpu_steps.py", "test_gpu_server.py", "test_gpu_benchmarks.py")  # in this order: the cold cache first


def main() -> int:
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; {torch.cuda.get_device_name() if cuda else 'no CUDA device'}", flush=True)
    start = time.perf_counter()
    # -s: each check's line and the benchmarks' tables as they come
    code = pytest.main(["-s", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(REPO),
                        *(str(REPO / "tests" / "gpu" / name) for name in CHECKS)])  # fmt: skip
    if not cuda:
        print("no CUDA device: the CUDA checks were skipped")
    else:
        print("all checks passed" if code == 0 else "a check failed", f"in {time.perf_counter() - start:.0f} s")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
