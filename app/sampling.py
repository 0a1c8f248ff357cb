"""Sampling from a run's checkpoint in the browser: the request, its cache, and the short-lived sampler process.

The server never imports torch: each miss runs `python -m trainer.sampler` in a process of its own, one at a time (the
second request waits for the first, then finds its own answer in the cache when it asked for the same). The images
are cached under runs/<id>/generated/, named by a hash of the checkpoint file (name, size and mtime, of D too in
generate mode: netg.pth is rewritten every epoch) and of the parameters that shape the picture.

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
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.db import Checkpoint, Run
from app import gpus
from trainer.protocol import CHECKPOINTS_DIR

router = APIRouter(prefix="/api/runs/{run_id}", tags=["sampling"])
RunId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the run's id")]
REPO = Path(__file__).resolve().parent.parent
GENERATED_DIR = "generated"
TIMEOUT_SECONDS = 300.0  # 512 images at 96x96 take well under a minute on 2 CPU cores
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


class SampleOut(BaseModel):
    url: str = Field(description="the PNG: a grid, or the walk as one strip")
    animation_url: str | None = Field(None, description="walk: the frames as an animated WebP")
    cached: bool = Field(description="true when the images were made by an earlier request")
    device: str | None = Field(description="where the sampler ran; null on a cache hit")


def _field_error(field: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": msg}])


def _checkpoint(request: Request, run_id: int, name: str) -> Path:
    """The generator file the request names: 404 unless the run has it registered, 422 when it is not a generator."""
    with request.app.state.sessions() as session:
        if session.get(Run, run_id) is None:
            raise HTTPException(404, f"run {run_id} not found")
        known = session.get(Checkpoint, {"run_id": run_id, "name": name})
    path = request.app.state.settings.runs_dir / str(run_id) / CHECKPOINTS_DIR / name
    if known is None or not path.is_file():
        raise HTTPException(404, f"checkpoint {name!r} not found in run {run_id}")
    if not name.startswith("netg"):
        raise _field_error("checkpoint", f"{name} is not a generator: choose a netg*.pth checkpoint")
    return path


def _cache_key(netg: Path, body: SampleRequest) -> str:
    files = [netg] + ([netg.with_name("netd" + netg.name[4:])] if body.mode == "generate" else [])
    stamps = [[p.name, *((s.st_size, s.st_mtime_ns) if (s := _stat(p)) else ())] for p in files]
    return hashlib.sha256(json.dumps([stamps, body.shape()]).encode()).hexdigest()[:32]


def _stat(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


def _device(request: Request) -> tuple[str, str]:
    """(CUDA_VISIBLE_DEVICES, --device): a GPU no training worker holds, else the CPU."""
    gpu = gpus.idle(request.app.state.supervisor.held_gpus())
    return (gpu, "cuda") if gpu is not None else ("", "cpu")


async def _run_sampler(cmd: list[str], gpu: str) -> None:
    """Run the sampler; its one-line error becomes a 422, a crash or a timeout a 500 with the reason."""
    env = {k: v for k, v in os.environ.items() if k != "GANBOARD_TOKEN"} | gpus.environment(gpu)
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        raise HTTPException(500, f"the sampler took over {TIMEOUT_SECONDS:.0f} s and was stopped") from None
    finally:
        if proc.returncode is None:  # timed out, or the server is stopping: no sampler is left behind
            proc.kill()
            await proc.wait()
    lines = err.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == 2 and lines and lines[-1].startswith("error: "):
        raise HTTPException(422, lines[-1].removeprefix("error: "))
    if proc.returncode != 0:
        raise HTTPException(500, f"the sampler failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")


def _urls(run_id: int, key: str, walk: bool) -> dict:
    base = f"/api/runs/{run_id}/{GENERATED_DIR}/{key}"
    return {"url": f"{base}.png", "animation_url": f"{base}.webp" if walk else None}


@router.post("/samples/generate", response_model=SampleOut)
async def generate_samples(run_id: RunId, body: SampleRequest, request: Request) -> dict:
    """Images from one of the run's generator checkpoints, made once per (checkpoint file, parameters) and cached."""
    netg = await run_in_threadpool(_checkpoint, request, run_id, body.checkpoint)
    key, walk = _cache_key(netg, body), body.mode == "walk"
    folder = netg.parent.parent / GENERATED_DIR
    out = folder / f"{key}.png"
    if not hasattr(request.app.state, "sampler_lock"):  # one per app, made on its event loop
        request.app.state.sampler_lock = asyncio.Lock()
    async with request.app.state.sampler_lock:
        if out.is_file():
            return {**_urls(run_id, key, walk), "cached": True, "device": None}
        folder.mkdir(exist_ok=True)
        gpu, device = _device(request)
        cmd = [
            sys.executable, "-m", "trainer.sampler", "--run-dir", str(netg.parent.parent), "--checkpoint", netg.name,
            "--mode", body.mode, "--seed", str(body.seed), "--count", str(body.count), "--seed2", str(body.end_seed),
            "--steps", str(body.steps), "--device", device, "--out", str(out),
        ]  # fmt: skip
        if walk:
            cmd += ["--animation", str(folder / f"{key}.webp")]
        await _run_sampler(cmd, gpu)
    return {**_urls(run_id, key, walk), "cached": False, "device": device if device == "cpu" else f"cuda:{gpu}"}


@router.api_route("/generated/{name}", methods=["GET", "HEAD"], response_class=FileResponse)
def get_generated(run_id: RunId, name: str, request: Request):
    """An image made by POST .../samples/generate; only the names it gives out (a hash and .png or .webp)."""
    path = request.app.state.settings.runs_dir / str(run_id) / GENERATED_DIR / name
    if not _NAME.match(name) or not path.is_file():
        raise HTTPException(404, f"generated image {name!r} not found in run {run_id}")
    return FileResponse(path, media_type="image/webp" if name.endswith(".webp") else "image/png")
