"""The server's side of the worker protocol, through the real server: a test plays the worker over `WS /ws/worker/{id}`.

The run is inserted straight into the server's database with a token we know (a fake supervisor), so every message, its
acknowledgement, duplicates and bad input can be checked one by one. Real workers go through the same endpoint in
test_e2e.py. The tests of what is stored run on a server on SQLite and one on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from sqlalchemy import func, select

from app.runs.hub import QUEUE_SIZE, RESYNC, Hub
from app.storage.db import Run, hash_token, make_engine, make_sessionmaker, metric_buckets
from tests.conftest import TINY
from tests.databases import KINDS
from tests.harness import page_messages
from trainer.config import TrainConfig

TOKEN = "test-token-for-a-fake-worker"
ON_BOTH = pytest.mark.parametrize("server", KINDS, indirect=True)  # a server on SQLite, and one on PostgreSQL


@pytest.fixture
def fake_run(server):
    """A run the supervisor did not start: status running, our token, no worker process."""
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine).begin() as s:
        run = Run(name="fake", status="running", config=TrainConfig(**TINY).model_dump(), token=hash_token(TOKEN), attempt=1)
        s.add(run)
        s.flush()
        run_id = run.id
    engine.dispose()
    run_dir = server.runs_dir / str(run_id)
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "config.json").write_text("{}")
    return run_id


def worker_socket(server, run_id: int, token: str = TOKEN):
    return connect(f"{server.ws_url}/ws/worker/{run_id}", additional_headers={"Authorization": f"Bearer {token}"})


def send(ws, seq: int, kind: str, attempt: int = 1, **payload) -> dict:
    ws.send(json.dumps({"seq": seq, "attempt": attempt, "type": kind, **payload}))
    return json.loads(ws.recv(timeout=30))


def rows(first: int, last: int, epoch: int = 1) -> dict[str, list]:
    steps = list(range(first, last + 1))
    return {
        "step": steps, "epoch": [epoch] * len(steps), "batch": [s - 1 for s in steps],
        "loss_d": [1.0] * len(steps), "loss_d_real": [0.5] * len(steps), "loss_d_fake": [0.5] * len(steps),
        "loss_g": [None if s % 2 else 2.0 for s in steps], "d_x": [0.6] * len(steps), "d_g_z": [0.4] * len(steps),
        "time": [1e9 + s for s in steps],
    }  # fmt: skip


RUNNING = dict(status="running", step=0, epoch=0, total_steps=10, total_epochs=1, batches_per_epoch=10, device="cpu")


def set_attempt(server, run_id: int, attempt: int) -> None:
    """What the supervisor does when it starts a run again (with the same token here, so the socket stays open)."""
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine).begin() as s:
        s.get(Run, run_id).attempt = attempt
    engine.dispose()


def steps_of(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 100_000}).json()["step"]


def test_a_wrong_or_missing_token_is_refused(server, fake_run):
    for token in ("wrong", ""):
        with pytest.raises(InvalidStatus) as e:
            worker_socket(server, fake_run, token).close()
        assert e.value.response.status_code == 403
    with pytest.raises(InvalidStatus):  # a token is good for its own run only
        worker_socket(server, 987654).close()
    with connect(f"{server.ws_url}/ws/worker/{fake_run}?token={TOKEN}") as ws:  # the query form works too
        assert send(ws, 1, "status", **RUNNING) == {"type": "ack", "seq": 1}


@ON_BOTH
def test_each_message_is_stored_once_and_acknowledged_again(server, fake_run):
    (server.runs_dir / str(fake_run) / "samples" / "epoch_0001.png").write_bytes(b"\x89PNG fake")
    (server.runs_dir / str(fake_run) / "checkpoints" / "netg.pth").write_bytes(b"weights")
    with connect(f"{server.ws_url}/ws/runs/{fake_run}") as page, worker_socket(server, fake_run) as ws:
        assert json.loads(page.recv(timeout=30))["type"] == "snapshot"
        assert send(ws, 1, "status", **RUNNING) == {"type": "ack", "seq": 1}
        assert send(ws, 2, "batch", rows=rows(1, 5)) == {"type": "ack", "seq": 2}
        assert send(ws, 2, "batch", rows=rows(1, 5)) == {"type": "ack", "seq": 2}  # a resend: acknowledged, not stored
        assert send(ws, 3, "batch", rows=rows(6, 10)) == {"type": "ack", "seq": 3}
        epoch = dict(epoch=1, step=10, sample="epoch_0001.png", checkpoints=["netg.pth"], images_per_s=123.0, seconds=1.5)
        assert send(ws, 4, "epoch", **epoch) == {"type": "ack", "seq": 4}
        assert send(ws, 5, "status", status="completed", step=10, epoch=1) == {"type": "ack", "seq": 5}

        live = page_messages(page.recv(timeout=30))
        while not (live[-1]["type"] == "run" and live[-1]["run"]["status"] == "completed"):
            live += page_messages(page.recv(timeout=30))
    batches = [m["rows"]["step"] for m in live if m["type"] == "batch"]
    assert batches == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]  # the duplicate never reached the page
    assert batches and all(set(m["rows"]) >= {"loss_d", "loss_g", "d_x", "d_g_z"} for m in live if m["type"] == "batch")
    assert [m["rows"]["time"] for m in live if m["type"] == "batch"] == [rows(1, 5)["time"], rows(6, 10)["time"]]  # x axes
    (page_epoch,) = [m for m in live if m["type"] == "epoch"]
    assert page_epoch["sample"]["url"] == f"/api/runs/{fake_run}/samples/epoch_0001.png"

    assert steps_of(server, fake_run) == list(range(1, 11))
    run = server.run(fake_run)
    assert (run["status"], run["step"], run["epoch"], run["total_steps"]) == ("completed", 10, 1, 10)
    assert run["images_per_s"] is None and run["eta_seconds"] is None  # measured only while it runs
    assert run["loss_g"] == 2.0 and run["device"] == "cpu"
    assert run["latest_sample"].endswith("/epoch_0001.png") and run["finished_at"]
    (sample,) = server.client.get(f"/api/runs/{fake_run}/samples").json()
    assert sample["epoch"] == 1 and sample["size"] == len(b"\x89PNG fake")
    (ckpt,) = server.client.get(f"/api/runs/{fake_run}/checkpoints").json()
    assert ckpt["name"] == "netg.pth" and ckpt["size"] == 7
    assert server.client.get(ckpt["url"]).content == b"weights"


@ON_BOTH
def test_a_new_attempt_forgets_what_the_last_one_logged_after_its_checkpoint(server, fake_run):
    for epoch in (1, 2):
        (server.runs_dir / str(fake_run) / "samples" / f"epoch_000{epoch}.png").write_bytes(b"png")
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **{**RUNNING, "total_steps": 20, "total_epochs": 2})
        send(ws, 2, "batch", rows=rows(1, 10))
        send(ws, 3, "epoch", epoch=1, step=10, sample="epoch_0001.png", checkpoints=[], images_per_s=1.0, seconds=1.0)
        send(ws, 4, "batch", rows=rows(11, 17, epoch=2))
        send(ws, 5, "epoch", epoch=2, step=17, sample="epoch_0002.png", checkpoints=[], images_per_s=1.0, seconds=1.0)
        # The worker died; the supervisor starts attempt 2, which resumes from the checkpoint of epoch 1, step 10.
        # Its seq starts again at 1.
        set_attempt(server, fake_run, 2)
        resumed = {**RUNNING, "step": 10, "epoch": 1, "total_steps": 20, "total_epochs": 2}
        assert send(ws, 1, "status", attempt=2, **resumed) == {"type": "ack", "seq": 1}
        assert steps_of(server, fake_run) == list(range(1, 11))
        assert [s["epoch"] for s in server.client.get(f"/api/runs/{fake_run}/samples").json()] == [1]
        assert server.run(fake_run)["latest_sample"].endswith("epoch_0001.png")
        send(ws, 2, "batch", attempt=2, rows=rows(11, 20, epoch=2))
    assert steps_of(server, fake_run) == list(range(1, 21))


def test_bad_messages_drop_the_connection_and_store_nothing(server, fake_run):
    (server.runs_dir / str(fake_run) / "checkpoints" / "ok.pth").write_bytes(b"x")
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **RUNNING)
        # A checkpoint name with a path trick is never registered, so it can never be served.
        epoch = dict(epoch=1, step=0, sample="epoch_0001.png", checkpoints=["../config.json", "ok.pth"], images_per_s=1.0, seconds=1.0)
        send(ws, 2, "epoch", **epoch)
    assert [c["name"] for c in server.client.get(f"/api/runs/{fake_run}/checkpoints").json()] == ["ok.pth"]
    assert server.client.get(f"/api/runs/{fake_run}/checkpoints/..%2Fconfig.json").status_code == 404
    for bad in ({"seq": 3, "attempt": 1, "type": "nonsense"}, {"seq": 3, "attempt": 1, "type": "batch"},
                {"seq": 3, "attempt": 1, "type": "epoch", "sample": "../x.png", "epoch": 2, "step": 1}):  # fmt: skip
        with worker_socket(server, fake_run) as ws:
            ws.send(json.dumps(bad))
            with pytest.raises(ConnectionClosed) as e:
                ws.recv(timeout=30)
            assert e.value.rcvd.code == 1003
    assert [s["epoch"] for s in server.client.get(f"/api/runs/{fake_run}/samples").json()] == [1]
    assert server.run(fake_run)["status"] == "running"


def test_a_page_that_falls_behind_is_resynced_and_never_blocks_publishing():
    async def scenario():
        hub = Hub()
        slow, quick = hub.subscribe(1), hub.subscribe(1)
        for i in range(QUEUE_SIZE * 3):  # nobody reads `slow`; publishing must not wait
            hub.publish(1, [{"type": "batch", "rows": {"step": [i]}}])
            if not quick.queue.empty():
                quick.queue.get_nowait()
        assert slow.stale and slow.queue.qsize() <= QUEUE_SIZE
        assert slow.queue.get_nowait() is RESYNC  # the sender turns this into a fresh snapshot
        assert not quick.stale
        hub.unsubscribe(slow)
        hub.unsubscribe(quick)
        assert not hub.pages

    # Its own thread: Playwright's session-wide browser leaves an event loop running in the main thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()


def test_workers_find_the_port_the_server_really_listens_on(tmp_path):
    """`uvicorn app.main:create_app --factory --port N` with GANBOARD_PORT unset or stale still trains end to end."""
    from tests.conftest import free_port, start_server

    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_PORT=str(free_port()))  # a port nobody listens on
    try:
        run = srv.create(epochs=1, max_steps=3)
        done = srv.wait_status(run["id"], "completed", "failed")
        assert done["status"] == "completed", done["error"]
        assert srv.client.get(f"/api/runs/{run['id']}/metrics").json()["step"] == [1, 2, 3]
    finally:
        srv.stop()


def test_an_older_database_gains_the_new_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the checkpoints table as the first version made it
        conn.execute("CREATE TABLE checkpoints (run_id INTEGER, name VARCHAR, size INTEGER, epoch INTEGER, PRIMARY KEY (run_id, name))")
        conn.execute("INSERT INTO checkpoints VALUES (1, 'netg.pth', 7, 1)")
    engine = make_engine(f"sqlite:///{db}")
    engine.dispose()
    with sqlite3.connect(db) as conn:
        assert "sha256" in {row[1] for row in conn.execute("PRAGMA table_info(checkpoints)")}
        assert conn.execute("SELECT name, sha256 FROM checkpoints").fetchall() == [("netg.pth", None)]


@ON_BOTH
def test_hostile_messages_are_refused_and_change_nothing(server, fake_run):
    """Issue 9, defect 11: through the real socket with the run's real token."""
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **RUNNING)
        send(ws, 2, "batch", rows=rows(1, 3))
    refused = [
        json.dumps({"seq": 3, "attempt": 1, "type": "status", "status": "<img src=x onerror=alert(1)>", "step": 1, "epoch": 0}),
        json.dumps({"seq": 3, "attempt": 1, "type": "batch", "rows": rows(4, 4)}).replace("1.0", "1e309"),
        json.dumps({"seq": 3, "attempt": 10**30, "type": "status", "status": "completed", "step": 1, "epoch": 0}),
    ]
    for text in refused:
        with worker_socket(server, fake_run) as ws:
            ws.send(text)
            with pytest.raises(ConnectionClosed) as e:
                ws.recv(timeout=30)
            assert e.value.rcvd.code == 1003
    # Well-formed, but from an attempt the supervisor never started, or an older one: acknowledged, not applied.
    with worker_socket(server, fake_run) as ws:
        assert send(ws, 3, "status", attempt=5, status="completed", step=3, epoch=0) == {"type": "ack", "seq": 3}
    set_attempt(server, fake_run, 2)
    with worker_socket(server, fake_run) as ws:
        assert send(ws, 4, "status", attempt=1, status="failed", error="old news") == {"type": "ack", "seq": 4}
    run = server.run(fake_run)
    assert (run["status"], run["error"]) == ("running", None) and steps_of(server, fake_run) == [1, 2, 3]

    with worker_socket(server, fake_run) as ws:  # attempt 2 ends the run; a later `running` does not revive it
        send(ws, 1, "status", attempt=2, status="completed", step=3, epoch=0)
        assert send(ws, 2, "status", attempt=2, **RUNNING) == {"type": "ack", "seq": 2}
    assert server.run(fake_run)["status"] == "completed"
    assert server.client.get("/api/runs").status_code == 200  # every run still reads back as JSON


def test_device_bf16_and_a_run_that_cannot_resume(server, fake_run):
    """Issue 9, defect 6: what the worker reported it runs on, and a failure that Resume would repeat."""
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **{**RUNNING, "device": "cuda:0", "bf16": True})
        run = server.run(fake_run)
        assert (run["device"], run["bf16"], run["resumable"]) == ("cuda:0", True, False)
        send(ws, 2, "status", status="failed", error="dataset: no MNIST files in /data/mnist", resumable=False)
    run = server.run(fake_run)
    assert run["status"] == "failed" and run["resumable"] is False
    r = server.client.post(f"/api/runs/{fake_run}/resume")
    assert r.status_code == 409 and "no MNIST files" in r.json()["detail"]
    assert server.run(fake_run)["status"] == "failed"


@ON_BOTH
def test_a_newer_snapshot_replaces_the_older_one(server, fake_run):
    """Issue 9, defects 2 and 3: mid-epoch checkpoints are labelled by what they hold and reach open pages."""
    ckpt = server.runs_dir / str(fake_run) / "checkpoints"
    names = {"old": ["netg_e0001_s000003.pth", "netd_e0001_s000003.pth"], "new": ["netg_e0001_s000007.pth", "netd_e0001_s000007.pth"]}
    for name in [*names["old"], *names["new"], "resume.pt"]:
        (ckpt / name).write_bytes(name.encode())
    with connect(f"{server.ws_url}/ws/runs/{fake_run}") as page, worker_socket(server, fake_run) as ws:
        assert json.loads(page.recv(timeout=30))["type"] == "snapshot"
        send(ws, 1, "status", **RUNNING)
        send(ws, 2, "status", status="cancelled", step=3, epoch=0, checkpoints=[*names["old"], "resume.pt"])
        set_attempt(server, fake_run, 2)
        reopen_as_running(server, fake_run)
        send(ws, 1, "status", attempt=2, **{**RUNNING, "step": 3})
        send(ws, 2, "status", attempt=2, status="cancelled", step=7, epoch=0, checkpoints=[*names["new"], "resume.pt"])
        published = []
        while len(published) < 2:
            published += [m["checkpoints"] for m in page_messages(page.recv(timeout=30)) if m["type"] == "checkpoints"]
    listed = server.client.get(f"/api/runs/{fake_run}/checkpoints").json()
    assert published[-1] == listed
    assert {c["name"]: (c["label"], c["step"]) for c in listed} == {
        "netd_e0001_s000007.pth": ("in epoch 1, step 7", 7), "netg_e0001_s000007.pth": ("in epoch 1, step 7", 7),
        "resume.pt": ("resume state", 7),
    }  # fmt: skip
    assert all(c["sha256"] for c in listed)


def reopen_as_running(server, run_id: int) -> None:
    """The supervisor's Resume and start, in one step (this run has no worker process)."""
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine).begin() as s:
        s.get(Run, run_id).status = "running"
    engine.dispose()


def page_history(server, run_id: int) -> dict:
    """The bucketed history a page opened now reads."""
    with connect(f"{server.ws_url}/ws/runs/{run_id}") as page:
        return json.loads(page.recv(timeout=30))["metrics"]


def stored_buckets(server, run_id: int) -> int:
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine)() as s:
        count = s.scalar(select(func.count()).select_from(metric_buckets).where(metric_buckets.c.run_id == run_id))
    engine.dispose()
    return count


@ON_BOTH
def test_a_page_reads_what_the_resumed_attempt_logged_not_what_it_replaced(server, fake_run):
    """The buckets ingest stores (app/storage/history.py) follow a resume: those past the checkpoint are dropped when the new
    attempt starts, and rebuilt from its rows, so a page never mixes the two attempts' values."""
    plan = {**RUNNING, "total_steps": 1_000, "total_epochs": 1, "batches_per_epoch": 1_000}
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **plan)
        send(ws, 2, "batch", rows=rows(1, 600))
        assert stored_buckets(server, fake_run) == 600  # refreshed at step 512, and 1 step a bucket (1,000 planned)
        set_attempt(server, fake_run, 2)
        send(ws, 1, "status", attempt=2, **{**plan, "step": 300})
        assert page_history(server, fake_run)["step"] == list(range(1, 301))
        send(ws, 2, "batch", attempt=2, rows={**rows(301, 600), "loss_d": [3.0] * 300})
    history = page_history(server, fake_run)
    assert history["step"] == list(range(1, 601)) and history["rows"] == [1] * 600
    assert history["loss_d"]["mean"] == [1.0] * 300 + [3.0] * 300


def test_a_later_score_the_sent_digests_and_removed_copies(server, fake_run):
    """FID/KID of epoch 1 arrive after epoch 2 (trainer/sidework.py); a checkpoint's digest is taken from the message
    when the size on disk agrees (the file is not read again) and refused when it does not; removed copies vanish."""
    ckpt = server.runs_dir / str(fake_run) / "checkpoints"
    for name in ("netg_0001.pth", "netg_0002.pth", "netg_best.pth"):
        (ckpt / name).write_bytes(b"x" * 10)
    claimed = {"size": 10, "sha256": "ab" * 32}  # not the bytes' hash: stored as sent, so the server did not read them
    wrong = {"size": 11, "sha256": "cd" * 32}
    with worker_socket(server, fake_run) as ws:
        send(ws, 1, "status", **RUNNING, graphed=False)
        send(ws, 2, "epoch", epoch=1, step=5, sample="epoch_0001.png", images_per_s=1.0, seconds=1.0, swd=90.0,
             checkpoints=["netg_0001.pth", "netg_best.pth"], digests={"netg_0001.pth": claimed, "netg_best.pth": wrong},
             best_by="swd", scoring=1)  # fmt: skip
        assert server.run(fake_run)["scoring"] == 1
        send(ws, 3, "epoch", epoch=2, step=10, sample="epoch_0002.png", images_per_s=1.0, seconds=1.0, swd=80.0,
             checkpoints=["netg_0002.pth"], digests={"netg_0002.pth": claimed}, removed=["netg_0001.pth"], scoring=1)  # fmt: skip
        assert send(ws, 4, "score", epoch=1, step=5, fid=40.0, kid=0.02, fid_at="75 px, CPU") == {"type": "ack", "seq": 4}
        assert send(ws, 5, "stopping", step=10) == {"type": "ack", "seq": 5}
    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{fake_run}/checkpoints").json()}
    assert set(listed) == {"netg_0002.pth"} and listed["netg_0002.pth"]["sha256"] == "ab" * 32
    samples = {s["epoch"]: s for s in server.client.get(f"/api/runs/{fake_run}/samples").json()}
    assert (samples[1]["fid"], samples[1]["kid"], samples[2]["fid"]) == (40.0, 0.02, None)
    run = server.run(fake_run)
    assert (run["scoring"], run["fid"], run["best_by"], run["graphed"]) == (None, 40.0, "swd", False)
