"""The one script a person with a GPU runs to know GANboard's CUDA path is sound (about 4 minutes on one H100).

    PYTHONPATH=/tmp/site python3 bench/gpu_check.py        # /tmp/site: the project's own dependencies, see docs/gpu.md

1. An article-preset checkpoint loads into the article's own NetG/NetD and computes what ours computes.
2. Graphed and eager steps give the same losses over 50 steps from one seed (fp32/TF32 and bf16), with D-only,
   G-only and D+G batches in the schedule.
3. Through the real server and worker processes, on the GPU: a tiny run trains, is cancelled, resumes, is cancelled
   again, and /api/runs/<id>/metrics holds every step 1..N exactly once. Start-up of the quick preset, twice (a cold and
   a warm emoji cache): POST -> first batch stored -> first sample grid stored.
4. `make_step` returns the graphed step on this GPU (a failed capture falls back to eager, logged).
5. The throughput table (bench/train_throughput.py --device cuda), and a run's efficiency (bench/run_efficiency.py
   --device cuda: whole runs against their step-only rate, targets >= 0.9 quick, >= 0.8 article).
6. One run on every GPU it sees (bench/ddp_scaling.py --device cuda: torchrun, DDP over NCCL), against one GPU.

On a machine without CUDA it runs check 1 on the CPU, prints "no CUDA device" and exits 0. Any failed check exits 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import scratch_server, wait_for  # noqa: E402
from tests.article import ArticleNetD, ArticleNetG  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.loop import train  # noqa: E402
from trainer.state import TrainState  # noqa: E402
from trainer.steps import GraphedStep, Step, make_step  # noqa: E402

TINY = dict(dataset="procedural", image_size=32, ngf=8, ndf=8, nz=16, batch_size=256, device="cuda")
FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


class _Quiet:
    def on_batch(self, rows):
        pass

    def on_epoch(self, info):
        pass

    def on_score(self, info):
        pass

    def on_stopping(self, step):
        pass

    def on_status(self, status, **info):
        pass


def article_checkpoint_loads(device: str) -> None:
    cfg = TrainConfig.preset("article", dataset="procedural", max_steps=2, device=device)
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, Path(run_dir), _Quiet())
        ckpt = Path(run_dir) / "checkpoints"
        art_g, art_d = ArticleNetG().eval(), ArticleNetD().eval()
        art_g.load_state_dict(torch.load(ckpt / "netg.pth", weights_only=True))  # strict: same keys and shapes
        art_d.load_state_dict(torch.load(ckpt / "netd.pth", weights_only=True))
        ours = TrainState.build(cfg.model_copy(update={"device": "cpu"}), torch.device("cpu"))
        ours.netg.load_state_dict(torch.load(ckpt / "netg.pth", weights_only=True))
        ours.netd.load_state_dict(torch.load(ckpt / "netd.pth", weights_only=True))
    z = torch.randn(4, 100, 1, 1)
    with torch.no_grad():
        same_g = torch.allclose(art_g(z), ours.netg.eval()(z), atol=1e-5)
        x = art_g(z)
        same_d = torch.allclose(art_d(x), torch.sigmoid(ours.netd.eval()(x)), atol=1e-5)
    check("article-preset checkpoint loads into the article's NetG/NetD", same_g and same_d)


def step_losses(graphed: bool, bf16: bool, steps: int = 50) -> torch.Tensor:
    cfg = TrainConfig.preset("quick", device="cuda", bf16=bf16, d_every=2, g_every=3)
    torch.manual_seed(cfg.seed)
    st = TrainState.build(cfg, torch.device("cuda"))
    amp = torch.autocast("cuda", torch.bfloat16, cache_enabled=False) if bf16 else nullcontext()
    step = (GraphedStep if graphed else Step)(st, cfg, amp)
    data = torch.randint(0, 256, (steps * cfg.batch_size, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(1)).cuda()  # fmt: skip
    rows = [step(i, data[i * cfg.batch_size : (i + 1) * cfg.batch_size]) for i in range(steps)]
    return torch.stack(rows).cpu()


def graphed_matches_eager() -> None:
    for bf16, tolerance in ((False, 1e-2), (True, 5e-2)):
        eager, graphed = step_losses(False, bf16), step_losses(True, bf16)
        same_nan = torch.equal(eager.isnan(), graphed.isnan())
        diff = (eager - graphed).nan_to_num().abs().max().item()
        check(f"graphed and eager steps agree over 50 steps ({'bf16' if bf16 else 'fp32/TF32'})",
              same_nan and diff <= tolerance, f"largest difference {diff:.2e} (tolerance {tolerance})")  # fmt: skip


def graphed_by_default() -> None:
    cfg = TrainConfig.preset("quick", device="cuda")
    st = TrainState.build(cfg, torch.device("cuda"))
    step = make_step(st, cfg, torch.autocast("cuda", torch.bfloat16))
    check("make_step captures the step as CUDA graphs", isinstance(step, GraphedStep) and step.graphed)


def through_the_server() -> None:
    with scratch_server(GANBOARD_MAX_CONCURRENT="1") as server:
        c = server.client
        run = c.post("/api/runs", json={"config": {**TINY, "epochs": 100_000}}).json()
        rid = run["id"]
        wait_for(lambda: server.run(rid)["step"] > 50, 120, 0.05, "the first steps")
        c.post(f"/api/runs/{rid}/cancel")
        first = server.wait_status(rid, "cancelled", "failed")
        check("a CUDA run cancels", first["status"] == "cancelled", f"at step {first['step']}, on {first.get('device')}")
        c.post(f"/api/runs/{rid}/resume")
        wait_for(lambda: server.run(rid)["step"] > first["step"] + 50, 120, 0.05, "steps after the resume")
        c.post(f"/api/runs/{rid}/cancel")
        second = server.wait_status(rid, "cancelled", "failed")
        check("it resumes on CUDA and cancels again", second["status"] == "cancelled", second.get("error") or "")
        steps = c.get(f"/api/runs/{rid}/metrics", params={"max_points": 1_000_000}).json()["step"]
        check("every step is stored once", steps == list(range(1, len(steps) + 1)), f"{len(steps)} steps")

        for cache in ("cold", "warm"):
            posted = time.perf_counter()
            rid = c.post("/api/runs", json={"config": {"device": "cuda"}}).json()["id"]  # the quick preset as is
            wait_for(lambda: server.run(rid)["step"] > 0, 120, 0.02, "the first batch")
            batch = time.perf_counter()
            wait_for(lambda: c.get(f"/api/runs/{rid}/samples").json(), 120, 0.02, "the first grid")
            grid = time.perf_counter()
            c.post(f"/api/runs/{rid}/cancel")
            server.wait_status(rid, "cancelled", "failed", "completed")
            print(f"     start-up, quick preset, {cache} emoji cache: POST -> first batch {batch - posted:.1f} s, "
                  f"-> first grid {grid - posted:.1f} s", flush=True)  # fmt: skip


def main() -> int:
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; {torch.cuda.get_device_name() if cuda else 'no CUDA device'}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GANBOARD_CACHE"] = cache  # a cold emoji cache, shared by the server's workers
        article_checkpoint_loads("cuda" if cuda else "cpu")
        if not cuda:
            print("no CUDA device: the CUDA checks were skipped")
            return 1 if FAILED else 0
        graphed_matches_eager()
        graphed_by_default()
        through_the_server()
    print("throughput (bench/train_throughput.py --device cuda --rounds 2):", flush=True)
    table = subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"), "--device", "cuda", "--rounds", "2"])
    check("throughput table", table.returncode == 0)
    print("a run's efficiency (bench/run_efficiency.py --device cuda):", flush=True)
    efficiency = subprocess.run([sys.executable, str(REPO / "bench" / "run_efficiency.py"), "--device", "cuda"],
                                capture_output=True, text=True)  # fmt: skip
    print(efficiency.stdout, efficiency.stderr[-2000:] if efficiency.returncode else "", flush=True)
    rows = [line.split() for line in efficiency.stdout.splitlines() if line.split()[:1] in (["quick"], ["article"])]
    for name, _, _, _, ratio, _, target, *_ in rows:
        check(f"run efficiency, {name} preset", float(ratio) >= float(target), f"{ratio} of the step-only rate")
    check("run efficiency table", efficiency.returncode == 0 and len(rows) == 2)
    print(f"one run on every GPU ({torch.cuda.device_count()}): bench/ddp_scaling.py --device cuda", flush=True)
    scaling = subprocess.run([sys.executable, str(REPO / "bench" / "ddp_scaling.py"), "--device", "cuda"])
    check("DDP scaling (torchrun, NCCL)", scaling.returncode == 0)
    print(f"{len(FAILED)} check(s) failed" if FAILED else "all checks passed", f"in {time.perf_counter() - start:.0f} s")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
