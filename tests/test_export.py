"""Exports of a finished run, each opened by its own reader: csv, json, zipfile, PIL and TensorBoard's event reader."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from PIL import Image

from trainer.protocol import ROW_COLUMNS


@pytest.fixture(scope="module")
def finished(server):
    run = server.create(epochs=2)
    return server.wait_status(run["id"], "completed")


def test_metrics_csv_and_json_hold_every_step_once(server, finished):
    r = server.client.get(f"/api/runs/{finished['id']}/export/metrics.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["step"]) for row in rows] == list(range(1, finished["step"] + 1))
    assert set(rows[0]) == set(ROW_COLUMNS) and float(rows[0]["loss_d"]) > 0

    data = server.client.get(f"/api/runs/{finished['id']}/export/metrics.json").json()
    assert data["columns"] == list(ROW_COLUMNS)
    steps = [row[data["columns"].index("step")] for row in data["rows"]]
    assert steps == list(range(1, finished["step"] + 1))


def test_grids_as_zip_and_animation(server, finished):
    r = server.client.get(f"/api/runs/{finished['id']}/export/samples.zip")
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert names == ["epoch_0001.png", "epoch_0002.png"]
    for fmt in ("gif", "webp"):
        r = server.client.get(f"/api/runs/{finished['id']}/export/samples.{fmt}")
        assert r.status_code == 200 and r.headers["content-type"] == f"image/{fmt}"
        with Image.open(io.BytesIO(r.content)) as im:
            assert im.format == fmt.upper() and im.n_frames == 2


def test_tensorboard_reads_the_event_file(server, finished, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = server.client.get(f"/api/runs/{finished['id']}/export/tensorboard.zip")
    assert r.status_code == 200
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    loss_d = events.Scalars("loss/loss_D")
    assert [e.step for e in loss_d] == list(range(1, finished["step"] + 1))
    assert len(events.Images("samples")) == 2
    swd = events.Scalars("quality/SWD x1e3")  # every epoch's, at its last step
    assert [e.step for e in swd] == [finished["step"] // 2, finished["step"]] and all(e.value > 0 for e in swd)
    fids = [s["fid"] for s in server.client.get(f"/api/runs/{finished['id']}/samples").json() if s["fid"] is not None]
    assert [e.value for e in events.Scalars("quality/FID")] == pytest.approx(fids) if fids else True
    machine = server.client.get(f"/api/runs/{finished['id']}/system").json()
    assert [e.value for e in events.Scalars("machine/CPU %")] == pytest.approx([m["cpu_percent"] for m in machine])
    assert "machine/GPU %" not in events.Tags()["scalars"]  # no GPU here: no value, no tag


def test_tensorboard_hparams_tab_holds_the_config(server, finished, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    r = server.client.get(f"/api/runs/{finished['id']}/export/tensorboard.zip")
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = EventAccumulator(str(folder))
    events.Reload()
    (content,) = events.PluginTagToContent("hparams").values()
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert hparams["dataset"] == "procedural" and hparams["lr_d"] == pytest.approx(2e-4) and hparams["epochs"] == 2
    assert "data_path" not in hparams  # unset: left out


def test_export_errors_name_the_problem(server):
    assert server.client.get("/api/runs/999999/export/metrics.csv").status_code == 404
    run = server.create(epochs=1000)
    server.client.post(f"/api/runs/{run['id']}/cancel")
    r = server.client.get(f"/api/runs/{run['id']}/export/samples.gif")
    assert r.status_code == 404 and "no sample grids" in r.json()["detail"]
    assert server.client.get(f"/api/runs/{run['id']}/export/samples.bmp").status_code == 422


def test_sixty_gif_exports_at_once_all_get_it_and_the_api_still_answers(server, finished):
    """Issue 20: sixty exports of one run's GIF made sixty builds in the request thread pool and the API stopped
    answering. Now they wait for one build off the pool (app/web/animations.py): every answer is the same GIF, and a plain
    GET sent while they wait is answered."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    url = f"{server.url}/api/runs/{finished['id']}/export/samples.gif?ms_per_epoch=123"

    async def main():
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            exports = [asyncio.create_task(client.get(url)) for _ in range(60)]
            probe = await client.get(f"{server.url}/api/runs/{finished['id']}")
            return probe, await asyncio.gather(*exports)

    with ThreadPoolExecutor(1) as pool:  # a loop of its own: another test's may be running on this thread
        probe, answers = pool.submit(asyncio.run, main()).result()
    assert probe.status_code == 200
    assert {r.status_code for r in answers} == {200} and len({r.content for r in answers}) == 1
    with Image.open(io.BytesIO(answers[0].content)) as gif:
        assert gif.n_frames == 2


# -- a long run: streamed, never whole in memory ---------------------------------------------------------------------

LONG = 200_000


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A completed run of LONG rows written straight into a SQLite file."""
    from app.storage.db import make_engine, make_sessionmaker
    from tests.browser.runs_in_db import write_run

    runs = tmp_path_factory.mktemp("long")
    run_id = write_run(runs, LONG)
    engine = make_engine(f"sqlite:///{runs / 'ganboard.db'}")
    yield make_sessionmaker(engine), run_id
    engine.dispose()


def peak_bytes(work) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_downsampled_metrics_of_a_long_run_are_read_in_one_pass(long_run):
    """Before: every row was fetched into one list first (110 MiB traced for 200,000 rows here)."""
    from app.storage import history

    sessions, run_id = long_run
    with sessions() as s:
        out = {}
        peak = peak_bytes(lambda: out.update(history.metrics(s, run_id, max_points=2000)))
    assert len(out["step"]) <= 2000 and out["step"][0] == 1 and out["step"][-1] == LONG
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_the_tensorboard_zip_of_a_long_run_streams_as_its_rows_are_read(long_run, tmp_path):
    """Before: the whole event file was written to a temporary folder before the first byte (257 s for a million
    steps). Now its first piece comes before the rows are read (a row added after it is in the file), and no piece
    holds more than a chunk of rows. (A short run's file is read by TensorBoard itself above; its reader checksums in
    Python, minutes for this one: the records are read here, their checksums checked with TensorBoard's own.)"""
    import struct

    from sqlalchemy import delete, insert
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    from app.web import export
    from app.storage.db import Metric
    from tests.browser.runs_in_db import row

    sessions, run_id = long_run
    body = export._tensorboard_zip(sessions, run_id, "long", [])
    pieces = [next(body)]
    with sessions.begin() as s:
        s.execute(insert(Metric), [{**{c: row(LONG + 1)[c] for c in ROW_COLUMNS}, "run_id": run_id}])
    try:
        pieces += body
    finally:
        with sessions.begin() as s:
            s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > LONG))
    assert max(map(len, pieces)) < 4 * 2**20
    (name,) = zipfile.ZipFile(io.BytesIO(b"".join(pieces))).namelist()
    data = zipfile.ZipFile(io.BytesIO(b"".join(pieces))).read(name)
    steps, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        record = data[at + 12 : at + 12 + length]
        if at < 1000:  # the first few records' checksums, by TensorBoard's own function
            assert struct.unpack_from("<I", data, at + 8)[0] == masked_crc32c(data[at : at + 8])
            assert struct.unpack_from("<I", data, at + 12 + length)[0] == masked_crc32c(record)
        event = Event.FromString(record)
        if any(v.tag == "loss/loss_D" for v in event.summary.value):
            steps.append(event.step)
        at += 16 + length
    assert name.startswith("long/events.out.tfevents.") and steps == list(range(1, LONG + 2))


def test_an_animation_of_a_long_run_holds_at_most_max_frames_from_the_first_grid_to_the_last(server):
    """Pillow decodes every frame before it encodes: a run of thousands of epochs made an animation of thousands of
    frames in memory. Now at most MAX_FRAMES, evenly spaced, the first and the last grid among them."""
    from sqlalchemy import insert

    from app.web.animations import MAX_FRAMES
    from app.storage.db import Sample, make_engine
    from tests.browser.runs_in_db import write_run
    from trainer.protocol import SAMPLES_DIR, sample_name

    run_id, epochs = write_run(server.runs_dir, 10), MAX_FRAMES + 41
    samples = server.runs_dir / str(run_id) / SAMPLES_DIR
    samples.mkdir(parents=True)
    for epoch in range(1, epochs + 1):  # grey level = the epoch, so a frame says which grid it is
        Image.new("L", (8, 8), epoch).convert("RGB").save(samples / sample_name(epoch))
    engine = make_engine(server.database_url)
    with engine.begin() as c:
        c.execute(insert(Sample), [{"run_id": run_id, "epoch": e, "name": sample_name(e)} for e in range(1, epochs + 1)])
    engine.dispose()
    r = server.client.get(f"/api/runs/{run_id}/export/samples.gif")
    assert r.status_code == 200, r.text
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.n_frames == MAX_FRAMES
        levels = []
        for k in (0, MAX_FRAMES - 1):
            im.seek(k)
            levels.append(im.convert("L").getpixel((0, 0)))
    assert levels == [1, epochs]
