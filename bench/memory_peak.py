"""Peak memory of training against trainer/memory.py's estimate, on the CPU (issue 20.9: ngf=ndf=512 at 32 px).

Each config runs in a fresh process: the nets and Adam built as the worker builds them, two eager training steps, then
the host copy of the resume state the epoch-end checkpoint takes (trainer/loop.py). Prints the peak RSS against the
estimate's total; a ratio below 1 means the estimate errs high, as it should.

    .venv/bin/python bench/memory_peak.py [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [dict(image_size=32, ngf=512, ndf=512), dict(image_size=96, ngf=64, ndf=64, batch_size=256)]

CHILD = """
import json, resource, sys
from contextlib import nullcontext
import torch
from trainer.checkpoint import host_copy
from trainer.config import TrainConfig
from trainer.data import load_images
from trainer.state import TrainState
from trainer.steps import make_step
cfg = TrainConfig(**json.loads(sys.argv[1]), device="cpu")
images = load_images(cfg)
st = TrainState.build(cfg, torch.device("cpu"))
step = make_step(st, cfg, nullcontext())
for i in range(int(sys.argv[2])):
    step(i, images[: cfg.batch_size])
copy = host_copy(st.resume_state())
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from trainer.config import TrainConfig
    from trainer.memory import estimate

    for config in CONFIGS:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config), str(args.steps)], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        peak = json.loads(out.splitlines()[-1])["peak"]
        need = estimate(TrainConfig(**config, device="cpu")).total
        print(f"{config}: peak RSS {peak / 2**30:.2f} GiB, estimated {need / 2**30:.2f} GiB: peak/estimate "
              f"{peak / need:.2f}")


if __name__ == "__main__":
    main()
