"""Sampling from a run's checkpoint in the browser: the request, its cache, and the warm sampler process.

The server never imports torch: a miss goes to one long-lived `python -m trainer.sampler --serve` process (started on
the first miss, it keeps torch and the nets it loaded warm and exits after IDLE_SECONDS without a request). Requests
reach it one at a time; identical requests in flight share one answer, at most MAX_WAITING different ones wait, and a
waiting request whose every client has left is dropped before the sampler starts on it. The images are cached under
runs/<id>/generated/, named by a hash of the checkpoint's SHA-256 as registered (of D's too in generate mode), so
`netg.pth` and the epoch copy with the same weights share their images, and of the parameters that shape the picture;
each run's cache is kept under `sample_cache_bytes`, the least recently used images evicted first.

Which device: a GPU only when no training worker holds it. A worker re-attached after a server restart does not say
which GPU it has, so while there is one the sampler runs on the CPU; with no GPU free it runs on the CPU too, rather
than wait behind a training run that may last hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app import gpus
from app.storage.db import Checkpoint
from app.storage.runfiles import RunFileResponse, open_in_run, regular_size
from app.web.deps import RunId, body_error, run_or_404
from trainer.protocol import CHECKPOINTS_DIR

router = APIRouter(prefix="/api/runs/{run_id}", tags=["sampling"])
REPO = Path(__file__).resolve().parents[2]
GENERATED_DIR = "generated"
TIMEOUT_SECONDS = 300.0  # 512 images at 96x96 take well under a minute on 2 CPU cores
IDLE_SECONDS = 120.0  # the warm sampler exits after this long without a request
MAX_WAITING = 16  # different requests in flight at once; past it, 503
_NAME = re.compile(r"^[0-9a-f]{32}\.(png|webp)$")


class SampleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(description="a netg*.pth checkpoint of the run, e.g. netg_0010.pth or netg.pth")
    mode: Literal["grid", "walk", "generate"] = Field("grid", description="walk: seed to seed2 in `steps` frames; "
                                                      "generate: 512 drawn, the `count` D scores highest kept")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    count: int = Field(64, ge=1, le=256, description="grid and generate: how many images")
    seed2: int | None = Field(None, ge=0, le=2**32 - 1, description="walk: where it ends (default seed + 1)")
    steps: int = Field(8, ge=2, le=64, description="walk: frames, both ends included")

    def shape(self) -> dict:
        """The parameters that change the picture in this mode (a walk does not depend on `count`)."""
        if self.mode == "walk":
            return {"mode": "walk", "seed": self.seed, "seed2": self.end_seed, "steps": self.steps}
        return {"mode": self.mode, "seed": self.seed, "count": self.count}

    @property
    def end_seed(self) -> int:
        return self.seed2 if self.seed2 is not None else (self.seed + 1) % 2**32


class GeneratedOut(BaseModel):
    """What POST /samples/generate made from a checkpoint: the images' URLs, and whether they came from the cache."""

    url: str = Field(description="the PNG: a grid, or the walk as one strip")
    animation_url: str | None = Field(None, description="walk: the frames as an animated WebP")
    cached: bool = Field(description="true when the images were made by an earlier request")
    device: str | None = Field(description="where the sampler ran; null on a cache hit")
    size: int = Field(description="bytes of the PNG")
    animation_size: int | None = Field(None, description="walk: bytes of the animated WebP")


def _checkpoint(request: Request, run_id: int, body: SampleRequest) -> tuple[Path, list[str]]:
    """The generator file the request names and the SHA-256s its images depend on (G's, and D's in generate mode): 404
    unless the run has them registered as regular files in its folder, 422 when it is not a generator."""
    name = body.checkpoint
    with request.app.state.sessions() as session:
        run_or_404(session, run_id)
        known = session.get(Checkpoint, {"run_id": run_id, "name": name})
        netd = session.get(Checkpoint, {"run_id": run_id, "name": "netd" + name[4:]}) if body.mode == "generate" else None
    run_dir = request.app.state.settings.runs_dir / str(run_id)
    try:
        if known is not None:
            regular_size(run_dir, CHECKPOINTS_DIR, name)  # a regular file inside the run's folder, reached without links
    except OSError:
        known = None
    if known is None:
        raise HTTPException(404, f"checkpoint {name!r} not found in run {run_id}")
    if not name.startswith("netg"):
        raise body_error(("checkpoint",), f"{name} is not a generator: choose a netg*.pth checkpoint")
    return run_dir / CHECKPOINTS_DIR / name, [c.sha256 or f"{c.name}@{c.size}" for c in (known, netd) if c is not None]


def _cache_key(hashes: list[str], body: SampleRequest) -> str:
    return hashlib.sha256(json.dumps([hashes, body.shape()]).encode()).hexdigest()[:32]


def _device(request: Request) -> tuple[str, str]:
    """(CUDA_VISIBLE_DEVICES, --device): a GPU no training worker holds, else the CPU."""
    gpu = gpus.idle(request.app.state.supervisor.held_gpus())
    return (gpu, "cuda") if gpu is not None else (gpus.ON_CPU, "cpu")


class WarmSampler:
    """The one sampler process of this server, on one device (CUDA_VISIBLE_DEVICES); started again when it has exited
    (idle) or another device is wanted. Whoever holds `lock` may `ask`."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.proc: asyncio.subprocess.Process | None = None
        self.gpu: str | None = None

    async def _start(self, gpu: str) -> None:
        await self.stop()
        env = {k: v for k, v in os.environ.items() if k != "GANBOARD_TOKEN"} | gpus.environment(gpu)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trainer.sampler", "--serve", str(IDLE_SECONDS), cwd=REPO, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.gpu = gpu

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def ask(self, argv: list[str], gpu: str) -> dict:
        """One request; the reply. A process that exited (idle) as the request came is started again, once."""
        for _ in range(2):
            if self.proc is None or self.proc.returncode is not None or self.gpu != gpu:
                await self._start(gpu)
            try:
                self.proc.stdin.write(json.dumps(argv).encode() + b"\n")
                await self.proc.stdin.drain()
                line = await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT_SECONDS)
            except (BrokenPipeError, ConnectionResetError):
                line = b""
            except asyncio.TimeoutError:
                await self.stop()
                raise HTTPException(500, f"the sampler took over {TIMEOUT_SECONDS:.0f} s and was stopped") from None
            if line:
                return json.loads(line)
            await self.stop()
        raise HTTPException(500, "the sampler exited without an answer; the server log has its output")


class Job:
    """A request in flight, shared by every client that asked for the same images."""

    def __init__(self) -> None:
        self.waiters, self.started = 0, False
        self.task: asyncio.Task | None = None


def _state(request: Request) -> tuple[WarmSampler, dict[str, Job]]:
    state = request.app.state
    if not hasattr(state, "sampler"):  # one per app, made on its event loop
        state.sampler, state.sample_jobs = WarmSampler(), {}
    return state.sampler, state.sample_jobs


async def _make(sampler: WarmSampler, job: Job, argv: list[str], gpu: str) -> None:
    async with sampler.lock:
        job.started = True  # from here on it runs to the end, into the cache, even if its clients leave
        reply = await sampler.ask(argv, gpu)
    if "error" in reply:
        raise HTTPException(422, reply["error"])


async def _client_left(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _evict(folder: Path, keep: int, new: str) -> None:
    """Delete the least recently used images (oldest access time: a cache hit sets it), never the `new` ones, until the
    folder holds at most `keep` bytes."""
    files = sorted(
        (st.st_atime_ns, st.st_size, p)
        for p in folder.iterdir() if _NAME.match(p.name) and not p.name.startswith(new) and (st := p.stat())
    )  # fmt: skip
    total = sum(size for _, size, _ in files)
    for _, size, path in files:
        if total <= keep:
            break
        path.unlink(missing_ok=True)
        total -= size


def _urls(run_id: int, key: str, folder: Path, walk: bool) -> dict:
    base = f"/api/runs/{run_id}/{GENERATED_DIR}/{key}"
    animation = folder / f"{key}.webp"
    return {"url": f"{base}.png", "animation_url": f"{base}.webp" if walk else None,
            "size": (folder / f"{key}.png").stat().st_size,
            "animation_size": animation.stat().st_size if walk else None}  # fmt: skip


def _hit(folder: Path, key: str, walk: bool) -> bool:
    """True when the images are cached; marks them used (LRU)."""
    files = [folder / f"{key}.png", *([folder / f"{key}.webp"] if walk else [])]
    if not all(p.is_file() for p in files):
        return False
    for path in files:  # the access time says when an image was last used; the modification time, when it was made
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
    return True


@router.post("/samples/generate", response_model=GeneratedOut, responses={503: {"description": "too many requests wait"}})
async def generate_samples(run_id: RunId, body: SampleRequest, request: Request):
    """Images from one of the run's generator checkpoints, made once per (checkpoint weights, parameters) and cached."""
    netg, hashes = await run_in_threadpool(_checkpoint, request, run_id, body)
    key, walk = _cache_key(hashes, body), body.mode == "walk"
    folder = netg.parent.parent / GENERATED_DIR
    if await run_in_threadpool(_hit, folder, key, walk):
        return {**_urls(run_id, key, folder, walk), "cached": True, "device": None}
    sampler, jobs = _state(request)
    gpu, device = _device(request)
    if (job := jobs.get(key)) is None:
        if len(jobs) >= MAX_WAITING:
            raise HTTPException(503, f"{len(jobs)} sampling requests are waiting already; try again in a moment")
        folder.mkdir(exist_ok=True)
        argv = [
            "--run-dir", str(netg.parent.parent), "--checkpoint", netg.name, "--mode", body.mode, "--seed", str(body.seed),
            "--count", str(body.count), "--seed2", str(body.end_seed), "--steps", str(body.steps), "--device", device,
            "--out", str(folder / f"{key}.png"), *(["--animation", str(folder / f"{key}.webp")] if walk else []),
        ]  # fmt: skip
        job = jobs[key] = Job()
        job.task = asyncio.create_task(_make(sampler, job, argv, gpu))
        job.task.add_done_callback(lambda task: jobs.pop(key, None) and (task.cancelled() or task.exception()))
    job.waiters += 1
    left = asyncio.create_task(_client_left(request))
    try:
        await asyncio.wait({job.task, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        job.waiters -= 1
        if not job.waiters and not job.started:  # nobody waits for it any more: never started
            job.task.cancel()
    if not job.task.done():
        return Response(status_code=499)  # the client left; nobody reads this
    job.task.result()  # the sampler's error, as an HTTPException
    await run_in_threadpool(_evict, folder, request.app.state.settings.sample_cache_bytes, key)
    return {**_urls(run_id, key, folder, walk), "cached": False, "device": device if device == "cpu" else f"cuda:{gpu}"}


@router.api_route("/generated/{name}", methods=["GET", "HEAD"], response_class=FileResponse)
def get_generated(run_id: RunId, name: str, request: Request):
    """An image made by POST .../samples/generate; only the names it gives out (a hash and .png or .webp)."""
    try:
        if not _NAME.match(name):
            raise FileNotFoundError(name)
        file = open_in_run(request.app.state.settings.runs_dir / str(run_id), GENERATED_DIR, name)
    except OSError:
        raise HTTPException(404, f"generated image {name!r} not found in run {run_id}") from None
    return RunFileResponse(file, media_type="image/webp" if name.endswith(".webp") else "image/png")
