"""A run's data in the formats other tools read: metrics as CSV and JSON, sample grids as a zip or an animation, and a
TensorBoard event file.

Metrics are streamed from the database in chunks at full resolution, so a run of millions of steps never sits in
memory, and so is the TensorBoard zip: its event file is made of TensorBoard's own summary protos (the server still never
imports torch, which tensorboardX would), framed as TFRecords here and written into the zip as the rows are read.
TensorBoard's `EventFileWriter` wrote a temporary file first and checksummed every byte in Python (CRC-32C): a run of a
million steps gave its first byte after 257 s; `google-crc32c` does it in C.

A zip is written to a stream that cannot seek (`_Chunks`): the standard library's zipfile then puts each entry's size
and CRC in a data descriptor after its bytes, so nothing is held back or spooled to disk to be sized first.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import timezone
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from app.storage.db import Metric, Run, Sample, SystemSample
from app.storage.json_view import download_name
from app.storage.runfiles import NotInRun, note, open_in_run, regular_size
from app.web.animations import encode, spaced
from app.web.deps import RunId
from trainer.protocol import METRICS, ROW_COLUMNS, SAMPLES_DIR

router = APIRouter(prefix="/api/runs/{run_id}/export", tags=["export"])
CHUNK = 5000  # rows per database fetch and per streamed piece
CHUNK_BYTES = 1 << 20  # bytes of a file per streamed piece of a zip


def _run_name(request: Request, run_id: int) -> str:
    with request.app.state.sessions() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise HTTPException(404, f"run {run_id} not found")
        return run.name


def _attachment(run_name: str, suffix: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{download_name(run_name, suffix)}"'}


def _rows(sessions: sessionmaker, run_id: int) -> Iterator[list[tuple]]:
    """Every metric row of the run in step order, CHUNK at a time, from a session of its own."""
    with sessions() as s:
        query = select(*(getattr(Metric, c) for c in ROW_COLUMNS)).where(Metric.run_id == run_id).order_by(Metric.step)
        yield from s.execute(query.execution_options(yield_per=CHUNK)).partitions()


def _csv(sessions: sessionmaker, run_id: int) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROW_COLUMNS)
    for chunk in _rows(sessions, run_id):
        writer.writerows(chunk)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def _json(sessions: sessionmaker, run_id: int) -> Iterator[str]:
    yield '{"columns": ' + json.dumps(ROW_COLUMNS) + ', "rows": ['
    first = True
    for chunk in _rows(sessions, run_id):
        yield ("" if first else ",") + ",".join(json.dumps(list(row)) for row in chunk)
        first = False
    yield "]}"


@router.get("/metrics.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def metrics_csv(run_id: RunId, request: Request):
    """Every per-batch row, one line each, with a header of the column names."""
    name = _run_name(request, run_id)
    body = _csv(request.app.state.sessions, run_id)
    return StreamingResponse(body, media_type="text/csv", headers=_attachment(name, "metrics.csv"))


@router.get("/metrics.json", response_class=StreamingResponse)
def metrics_json(run_id: RunId, request: Request):
    """Every per-batch row: `{"columns": [...], "rows": [[...], ...]}`."""
    name = _run_name(request, run_id)
    body = _json(request.app.state.sessions, run_id)
    return StreamingResponse(body, media_type="application/json", headers=_attachment(name, "metrics.json"))


class SampleFile(NamedTuple):
    epoch: int
    name: str
    run_dir: Path

    def open(self) -> BinaryIO:
        """The grid, opened without following links (app/storage/runfiles.py)."""
        return open_in_run(self.run_dir, SAMPLES_DIR, self.name)


def _sample_files(request: Request, run_id: int) -> list[SampleFile]:
    """The run's registered grids that are regular files inside its folder, in epoch order."""
    run_dir = request.app.state.settings.runs_dir / str(run_id)
    with request.app.state.sessions() as s:
        rows = s.execute(select(Sample.epoch, Sample.name).where(Sample.run_id == run_id).order_by(Sample.epoch)).all()
    files = []
    for epoch, name in rows:
        try:
            regular_size(run_dir, SAMPLES_DIR, name)
        except NotInRun as e:
            note(run_dir, f"sample grid {name} left out of an export: {e.strerror}")
            continue
        except OSError:
            continue
        files.append(SampleFile(epoch, name, run_dir))
    if not files:
        raise HTTPException(404, f"run {run_id} has no sample grids yet")
    return files


class _Chunks(io.RawIOBase):
    """A write-only stream that hands back what was written since the last `take()`: zipfile writes, we stream."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _zip(files: list[tuple[str, Callable[[], BinaryIO]]]) -> Iterator[bytes]:
    """A zip of (name in the zip, how to open the file) streamed as it is written; a file that cannot be opened any
    more is left out."""
    out = _Chunks()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:  # PNGs and event files are compressed already
        for arcname, open_file in files:
            try:
                src = open_file()
            except OSError:
                continue
            with src:
                mtime = time.localtime(os.fstat(src.fileno()).st_mtime)
                with z.open(zipfile.ZipInfo(arcname, mtime[:6]), "w") as dst:
                    while chunk := src.read(CHUNK_BYTES):
                        dst.write(chunk)
                        yield out.take()
    yield out.take()


@router.get("/samples.zip", response_class=StreamingResponse)
def samples_zip(run_id: RunId, request: Request):
    """Every epoch's sample grid, as the PNGs the worker wrote."""
    name = _run_name(request, run_id)
    files = [(f.name, f.open) for f in _sample_files(request, run_id)]
    return StreamingResponse(_zip(files), media_type="application/zip", headers=_attachment(name, "samples.zip"))


@router.get("/samples.{fmt}", response_class=Response, responses={200: {"content": {"image/gif": {}, "image/webp": {}}}})
async def samples_animation(run_id: RunId, fmt: Literal["gif", "webp"], request: Request, ms_per_epoch: int = 200):
    """The grids of every epoch as one animation (at most MAX_FRAMES, evenly spaced), the last frame held a little
    longer; built once for everyone who asks for the same grids (app/web/animations.py)."""
    name = await run_in_threadpool(_run_name, request, run_id)
    files = spaced(await run_in_threadpool(_sample_files, request, run_id))
    key = (run_id, fmt, ms_per_epoch, *((f.name, *_identity(f)) for f in files))

    def build() -> bytes:
        from PIL import Image

        frames = []
        for sample in files:
            with sample.open() as f:
                frames.append(Image.open(f).convert("RGB"))
        return encode(frames, fmt, ms_per_epoch)

    body = await request.app.state.animations.get(key, build)
    return Response(body, media_type=f"image/{fmt}", headers=_attachment(name, f"samples.{fmt}"))


def _identity(sample: SampleFile) -> tuple[int, int]:
    """(size, mtime) of a grid: a resumed run writes an epoch's grid again under the same name."""
    try:
        st = os.lstat(sample.run_dir / SAMPLES_DIR / sample.name)
    except OSError:
        return (0, 0)
    return st.st_size, st.st_mtime_ns


QUALITY_TAGS = {"swd": "quality/SWD x1e3", "fid": "quality/FID", "kid": "quality/KID"}  # per epoch, lower is better
SYSTEM_TAGS = {"cpu_percent": "machine/CPU %", "rss_mb": "machine/RSS MB", "gpu_util": "machine/GPU %",
               "gpu_mem_mb": "machine/GPU memory MB", "gpu_temp_c": "machine/GPU temperature C"}  # fmt: skip


def _hparams(config: dict) -> dict:
    """The run's config as TensorBoard's HParams plugin takes it: numbers, strings and booleans (unset ones left out)."""
    return {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}


def _record(data: bytes) -> bytes:
    """One TFRecord, as TensorBoard reads an event file: length, its masked CRC-32C, the data, the data's."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _events(sessions: sessionmaker, run_id: int, samples: list[SampleFile]) -> Iterator[list[bytes]]:
    """The run's event file as lists of serialized events: every metric row, CHUNK at a time, then the grids, the
    scores and the machine samples."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import summary_v2 as hparams

    def scalars(wall_time: float, step: int, values: dict[str, float | None]) -> bytes:
        summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items() if v is not None])
        return Event(wall_time=wall_time, step=step, summary=summary).SerializeToString()

    tags = [(ROW_COLUMNS.index(m.name), f"{m.chart}/{m.label}") for m in METRICS]
    step_at, time_at = ROW_COLUMNS.index("step"), ROW_COLUMNS.index("time")
    with sessions() as session:
        run = session.get(Run, run_id)
        started = (run.started_at or run.created_at).replace(tzinfo=timezone.utc).timestamp()  # stored as naive UTC
        # The file's version first, then the HParams tab's row for this run: its config; its metrics follow.
        yield [Event(wall_time=started, file_version="brain.Event:2").SerializeToString(),
               Event(wall_time=started, summary=hparams.hparams_pb(
                   _hparams(run.config), trial_id=run.name, start_time_secs=int(started))).SerializeToString()]  # fmt: skip
        for chunk in _rows(sessions, run_id):
            yield [
                Event(wall_time=row[time_at], step=row[step_at], summary=Summary(value=[
                    Summary.Value(tag=tag, simple_value=row[i]) for i, tag in tags if row[i] is not None])).SerializeToString()
                for row in chunk
            ]  # fmt: skip
        epoch_ends = {  # epoch -> (its last step, that step's time)
            epoch: (step, at) for epoch, step, at in session.execute(
                select(Metric.epoch, func.max(Metric.step), func.max(Metric.time)).where(Metric.run_id == run_id)
                .group_by(Metric.epoch))
        }  # fmt: skip
        for sample in samples:
            if (image := _image_event(sample, epoch_ends.get(sample.epoch, (sample.epoch,))[0])) is not None:
                yield [image]
        scores = []
        for s in session.scalars(select(Sample).where(Sample.run_id == run_id).order_by(Sample.epoch)):
            step, at = epoch_ends.get(s.epoch, (s.epoch, started))
            scores.append(scalars(at, step, {tag: getattr(s, name) for name, tag in QUALITY_TAGS.items()}))
        yield scores
        machine = session.scalars(select(SystemSample).where(SystemSample.run_id == run_id).order_by(SystemSample.time))
        yield [scalars(m.time, m.step, {tag: getattr(m, name) for name, tag in SYSTEM_TAGS.items()}) for m in machine]


def _image_event(sample: SampleFile, step: int) -> bytes | None:
    """A grid as an image event at `step`, timed by its file; None when it cannot be opened any more."""
    from PIL import Image
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    try:
        f = sample.open()
    except OSError:
        return None
    with f:
        png, mtime = f.read(), os.fstat(f.fileno()).st_mtime
    with Image.open(io.BytesIO(png)) as im:
        width, height = im.size
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
    return Event(wall_time=mtime, step=step, summary=Summary(value=[Summary.Value(tag="samples", image=image)])).SerializeToString()


def _tensorboard_zip(sessions: sessionmaker, run_id: int, folder: str, samples: list[SampleFile]) -> Iterator[bytes]:
    """A zip of `folder/` holding the run's event file, streamed as its events are made."""
    out = _Chunks()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo(f"{folder}/events.out.tfevents.{int(time.time()):010d}.ganboard", time.localtime()[:6])
        with z.open(info, "w", force_zip64=True) as dst:  # its size is not known before it is written
            for events in _events(sessions, run_id, samples):
                dst.write(b"".join(map(_record, events)))
                yield out.take()
    yield out.take()


@router.get("/tensorboard.zip", response_class=StreamingResponse)
def tensorboard_events(run_id: RunId, request: Request):
    """A TensorBoard log folder: every metric as a scalar by step, every grid as an image, SWD, FID and KID by epoch
    (at the epoch's last step), the machine samples, and the config for the HParams tab. Unzip it and run
    `tensorboard --logdir` on the folder."""
    name = _run_name(request, run_id)
    try:
        samples = _sample_files(request, run_id)
    except HTTPException:
        samples = []
    body = _tensorboard_zip(request.app.state.sessions, run_id, name, samples)
    return StreamingResponse(body, media_type="application/zip", headers=_attachment(name, "tensorboard.zip"))
