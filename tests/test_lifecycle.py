"""A run's life through the real server and real workers: the supervisor is the one owner of its status, and a newer
attempt is never undone by an older one (issue 9's defects 1, 2, 5, 6, 8, 9, 10)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
from websockets.sync.client import connect

from app.storage.db import Run, make_engine, make_sessionmaker
from tests.harness import page_messages, start_server, wait_for


@pytest.fixture
def solo(tmp_path):
    """A server with one worker slot, so a second run queues."""
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_MAX_CONCURRENT="1")
    yield srv
    srv.stop()


def test_resume_right_after_cancel_starts_a_new_attempt(solo):
    run_id = solo.create(epochs=1000)["id"]
    wait_for(lambda: solo.run(run_id)["step"] > 0, what="training")
    assert solo.client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    cancelled = solo.wait_status(run_id, "cancelled")
    resumed = solo.client.post(f"/api/runs/{run_id}/resume")  # while the cancelled worker may still be exiting
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"

    log = solo.runs_dir / str(run_id) / "worker.log"
    again = wait_for(lambda: (r := solo.run(run_id))["status"] == "running" and r["step"] > cancelled["step"] and r,
                     timeout=90, what="the resumed attempt to train")  # fmt: skip
    assert again["attempt"] == 2 and "--- attempt 2" in log.read_text()
    assert again["active_seconds"] >= cancelled["active_seconds"]
    solo.client.post(f"/api/runs/{run_id}/cancel")
    assert solo.wait_status(run_id, "cancelled", "failed", "completed")["status"] == "cancelled"


def test_time_cancelled_does_not_count_as_active(solo):
    run_id = solo.create(epochs=1000)["id"]
    wait_for(lambda: solo.run(run_id)["step"] > 0, what="training")
    solo.client.post(f"/api/runs/{run_id}/cancel")
    cancelled = solo.wait_status(run_id, "cancelled")
    wait_for(lambda: solo.run(run_id)["pid"] is None, what="the worker to be reaped")
    time.sleep(1.5)  # time passes while it is cancelled
    later = solo.run(run_id)
    assert later["active_seconds"] == cancelled["active_seconds"] > 0
    assert later["images_per_s"] is None and later["eta_seconds"] is None and later["resumable"] is True


def test_a_cancel_right_after_create_always_holds(solo):
    ids = []
    for _ in range(10):
        run_id = solo.create(epochs=3)["id"]
        answer = solo.client.post(f"/api/runs/{run_id}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] in ("cancelled", "running")  # running: its worker was asked to stop
        ids.append(run_id)
        assert solo.wait_status(run_id, "cancelled", "completed", "failed")["status"] == "cancelled"
    # Every worker gone, and nothing flipped back afterwards.
    wait_for(lambda: all(solo.run(i)["pid"] is None for i in ids), what="every worker to be reaped")
    assert [solo.run(i)["status"] for i in ids] == ["cancelled"] * len(ids)


def test_run_ids_are_never_reused(solo):
    first = solo.create(epochs=1, max_steps=2)
    solo.wait_status(first["id"], "completed")
    assert solo.client.delete(f"/api/runs/{first['id']}").status_code == 204
    second = solo.create(epochs=1, max_steps=2)
    assert second["id"] > first["id"]
    assert solo.client.get(f"/api/runs/{first['id']}").status_code == 404
    assert solo.wait_status(second["id"], "completed", "failed")["status"] == "completed"


def test_an_older_database_gets_ids_that_are_never_reused(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the runs table as GANboard made it before AUTOINCREMENT, and a metric row
        conn.executescript("""
            CREATE TABLE runs (id INTEGER NOT NULL, name VARCHAR NOT NULL, status VARCHAR NOT NULL, config JSON NOT NULL,
                created_at DATETIME NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, attempt INTEGER NOT NULL,
                resume BOOLEAN NOT NULL, PRIMARY KEY (id));
            CREATE INDEX ix_runs_status ON runs (status);
            CREATE TABLE metrics (run_id INTEGER NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
                batch INTEGER NOT NULL, loss_d FLOAT, loss_d_real FLOAT, loss_d_fake FLOAT, loss_g FLOAT, d_x FLOAT,
                d_g_z FLOAT, time FLOAT NOT NULL, PRIMARY KEY (run_id, step),
                FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE);
            INSERT INTO runs VALUES (1, 'a', 'completed', '{}', '2026-01-01 00:00:00', 5, 1, 1, 0);
            INSERT INTO runs VALUES (2, 'b', 'completed', '{}', '2026-01-01 00:00:00', 5, 1, 1, 0);
            INSERT INTO metrics VALUES (1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0);
        """)  # fmt: skip
    engine = make_engine(f"sqlite:///{db}")
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        assert [(r.id, r.name, r.ran_seconds) for r in s.query(Run).order_by(Run.id)] == [(1, "a", 0.0), (2, "b", 0.0)]
        s.delete(s.get(Run, 2))
    with sessions.begin() as s:
        run = Run(name="c", config={})
        s.add(run)
        s.flush()
        assert run.id == 3
    engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT run_id FROM metrics").fetchall() == [(1,)]  # run 1's metrics kept
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    make_engine(f"sqlite:///{db}").dispose()  # opening it again changes nothing


def test_a_run_that_cannot_start_fails_alone_and_the_others_move_on(solo):
    a = solo.create(epochs=1000)["id"]
    wait_for(lambda: solo.run(a)["step"] > 0, what="training")
    b = solo.create(epochs=1)["id"]  # queued behind a
    (solo.runs_dir / str(b) / "config.json").mkdir(parents=True)  # a folder where its config.json should be written
    os.kill(solo.run(a)["pid"], signal.SIGKILL)
    failed = solo.wait_status(a, "failed", timeout=60)
    assert "killed (SIGKILL)" in failed["error"] and failed["pid"] is None
    cannot = solo.wait_status(b, "failed", timeout=60)
    assert "could not be started" in cannot["error"] and cannot["attempt"] == 0
    c = solo.create(epochs=1, max_steps=2)["id"]  # the queue still moves
    assert solo.wait_status(c, "completed", "failed")["status"] == "completed"


def test_a_stop_mid_epoch_publishes_its_checkpoints_and_speed_is_measured_while_training(solo):
    run_id = solo.create(epochs=1000)["id"]
    with connect(f"{solo.ws_url}/ws/runs/{run_id}") as page:
        assert json.loads(page.recv(timeout=30))["type"] == "snapshot"
        training = wait_for(lambda: (r := solo.run(run_id))["images_per_s"] and r, what="a measured speed")
        assert training["eta_seconds"] > 0 and training["device"] == "cpu"
        solo.client.post(f"/api/runs/{run_id}/cancel")
        live = []
        while not live or live[-1] != ("run", "cancelled"):
            for msg in page_messages(page.recv(timeout=60)):
                live.append((msg["type"], msg["run"]["status"]) if msg["type"] == "run" else (msg["type"], msg))
    (published,) = [m for kind, m in live if kind == "checkpoints"]
    names = {c["name"] for c in published["checkpoints"]}
    assert "resume.pt" in names and all(c["label"] and c["sha256"] for c in published["checkpoints"])
    listed = solo.client.get(f"/api/runs/{run_id}/checkpoints").json()
    assert {c["name"] for c in listed} == names
    done = solo.run(run_id)
    assert done["images_per_s"] is None and done["eta_seconds"] is None
