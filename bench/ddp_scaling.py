"""images/s of one run on 1 and on N processes (torchrun + DistributedDataParallel), through the real worker.

    .venv/bin/python bench/ddp_scaling.py [--device cpu|cuda] [--gpus N] [--steps 40] [--preset quick] [--batch 256]

Each measurement starts `python -m trainer.worker` on a scratch run dir, as the dashboard does (no server: the worker
journals what it would send), and reads the training speed from the journal's batch rows (their times, after a
warm-up). On a CPU the N processes share the cores, so N is slower: the ratio measures DDP's overhead (gloo
all-reduces, one process's threads split N ways). On N GPUs the ratio is the scaling (ideal: N).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.config import TrainConfig  # noqa: E402

WARMUP = 5  # steps left out of every timing (DDP's first all-reduces, cuDNN autotuning, allocator)


def images_per_s(cfg: TrainConfig, threads: int | None) -> float:
    """One worker run of `cfg` (max_steps set); images/s of its steps after WARMUP, from the journal's times."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        (run_dir / "config.json").write_text(cfg.model_dump_json())
        cmd = [sys.executable, "-m", "trainer.worker", "--run-dir", str(run_dir), "--run-id", "1",
               "--server", "ws://127.0.0.1:9", *(["--threads", str(threads)] if threads else [])]  # fmt: skip
        env = {**os.environ, "GANBOARD_ACK_WAIT_SECONDS": "0", "OMP_WAIT_POLICY": "PASSIVE"}
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        steps, times = [], []
        for line in (run_dir / "journal.jsonl").read_text().splitlines():
            msg = json.loads(line)
            if msg["type"] == "batch":
                steps += msg["rows"]["step"]
                times += msg["rows"]["time"]
            if msg["type"] == "status" and msg["status"] == "failed":
                raise SystemExit(f"the run failed: {msg['error']}\n{done.stderr[-2000:]}")
        if len(steps) <= WARMUP + 1:
            raise SystemExit(f"only {len(steps)} steps were reported\n{done.stderr[-2000:]}")
        return cfg.batch_size * (len(steps) - WARMUP) / (times[-1] - times[WARMUP - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--gpus", type=int, help="processes for the second measurement (default: every GPU; CPU: 2)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--batch", type=int, default=256, help="the global batch")
    parser.add_argument("--threads", type=int, help="CPU threads in all (default: every core)")
    args = parser.parse_args()
    if args.gpus is None:
        import torch

        args.gpus = torch.cuda.device_count() if args.device == "cuda" else 2
    if args.gpus < 2:
        print(f"{args.gpus} device(s) of type {args.device}: nothing to scale")
        return
    base = dict(dataset="procedural", device=args.device, max_steps=args.steps, epochs=1000, fid=False,
                batch_size=args.batch)  # fmt: skip
    one = images_per_s(TrainConfig.preset(args.preset, **base), args.threads)
    many = images_per_s(TrainConfig.preset(args.preset, **base, gpus=args.gpus), args.threads)
    print(f"{args.preset}, global batch {args.batch}, {args.device}: 1 process {one:,.0f} images/s, "
          f"{args.gpus} processes {many:,.0f} images/s: x{many / one:.2f} (ideal on {args.gpus} GPUs: x{args.gpus})")


if __name__ == "__main__":
    main()
