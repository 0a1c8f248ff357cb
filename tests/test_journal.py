"""The worker's journal and the server's replay of it: first on a real SQLite file and a PostgreSQL database, then the
outages of issue 10 through the real server and real workers (each fails on the code before the journal)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from websockets.sync.client import connect

from app.storage.db import Metric, Run, make_engine, make_sessionmaker
from app.storage.ingest import ingest
from app.storage.journal import replay
from tests.harness import page_messages, start_server, wait_for
from tests.test_worker_sink import rows
from trainer.journal import JournalWriter
from trainer.protocol import JOURNAL, BatchMessage, StatusMessage

# -- the replay, on a database --------------------------------------------------------------------------------------


@pytest.fixture
def db(db_url, tmp_path):
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as s:
        s.add(Run(id=1, name="r", config={}, status="running", attempt=1))
    (tmp_path / "1").mkdir()
    return sessions, tmp_path / "1"


def running(seq: int, attempt: int = 1, step: int = 0, epoch: int = 0) -> StatusMessage:
    return StatusMessage(seq=seq, attempt=attempt, status="running", step=step, epoch=epoch, total_steps=100,
                         total_epochs=1, device="cpu")  # fmt: skip


def batch(seq: int, *steps: int, attempt: int = 1) -> BatchMessage:
    return BatchMessage(seq=seq, attempt=attempt, rows=rows(*steps))


def append(run_dir: Path, *messages) -> None:
    journal = JournalWriter(run_dir / JOURNAL)
    for msg in messages:
        journal.write(msg.model_dump_json())
    journal.close()


def stored_steps(sessions) -> list[int]:
    with sessions() as s:
        return list(s.scalars(select(Metric.step).order_by(Metric.step)))


def offset_of(sessions) -> int | None:
    with sessions() as s:
        return s.get(Run, 1).journal_offset


def test_replay_stores_each_line_once_and_reads_only_what_is_new(db):
    sessions, run_dir = db
    append(run_dir, running(1), batch(2, 1, 2), batch(3, 3))
    assert replay(sessions, 1, run_dir) == 3
    assert stored_steps(sessions) == [1, 2, 3]
    assert offset_of(sessions) == (run_dir / JOURNAL).stat().st_size
    assert replay(sessions, 1, run_dir) == 0

    with sessions.begin() as s:  # the socket stored seq 4 first
        ingest(s, s.get(Run, 1), run_dir, batch(4, 4))
    append(run_dir, batch(4, 4), batch(5, 5))
    assert replay(sessions, 1, run_dir) == 1
    assert stored_steps(sessions) == [1, 2, 3, 4, 5]


def test_a_torn_last_line_waits_and_a_line_that_is_no_message_is_skipped(db, caplog):
    sessions, run_dir = db
    append(run_dir, running(1), batch(2, 1))
    with (run_dir / JOURNAL).open("ab") as f:
        f.write(batch(3, 2).model_dump_json().encode()[:40])  # a worker killed mid-line, or still writing it
    assert replay(sessions, 1, run_dir) == 2
    complete = offset_of(sessions)
    assert complete < (run_dir / JOURNAL).stat().st_size
    assert replay(sessions, 1, run_dir) == 0 and offset_of(sessions) == complete

    with (run_dir / JOURNAL).open("ab") as f:
        f.write(b"\n")  # the torn line, ended: not a message
    append(run_dir, batch(3, 2))
    assert replay(sessions, 1, run_dir) == 1
    assert stored_steps(sessions) == [1, 2]
    assert "is not a message" in caplog.text


def test_an_older_attempt_is_stored_before_the_next_one_drops_its_steps_past_the_checkpoint(db):
    sessions, run_dir = db
    append(run_dir, running(1), batch(2, 1, 2, 3), batch(3, 4, 5))
    replay(sessions, 1, run_dir)  # its worker ended: replayed before the run can start again
    with sessions.begin() as s:
        s.get(Run, 1).attempt = 2  # the supervisor starts the next attempt
    append(run_dir, running(1, attempt=2, step=3), batch(2, 4, attempt=2))
    assert replay(sessions, 1, run_dir) == 2
    assert stored_steps(sessions) == [1, 2, 3, 4]


def test_replay_batches_many_lines_into_few_transactions(db):
    sessions, run_dir = db
    append(run_dir, running(1), *(batch(seq, seq - 1) for seq in range(2, 1002)))
    assert replay(sessions, 1, run_dir) == 1001
    assert stored_steps(sessions) == list(range(1, 1001))


# -- outages, through the real server and real workers --------------------------------------------------------------

ACK_WAIT = {"GANBOARD_ACK_WAIT_SECONDS": "1"}  # the workers' wait for the server at their end (60 s by default)


def all_steps(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()["step"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_of(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def kill_server(server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.client.close()


def assert_whole(server, run_id: int, epochs: list[int], checkpoints: set[str]) -> None:
    """Completed, every step stored once, each finished epoch's grid and the checkpoints listed and downloadable."""
    run = server.run(run_id)
    assert run["status"] == "completed", run["error"]
    assert all_steps(server, run_id) == list(range(1, run["total_steps"] + 1))
    samples = server.client.get(f"/api/runs/{run_id}/samples").json()
    assert [s["epoch"] for s in samples] == epochs
    assert run["latest_sample"] == samples[-1]["url"]
    listed = server.client.get(f"/api/runs/{run_id}/checkpoints").json()
    assert checkpoints <= {c["name"] for c in listed}
    for file in samples + listed:
        r = server.client.get(file["url"])
        assert r.status_code == 200 and len(r.content) == file["size"], file


@pytest.mark.parametrize("config, checkpoints", [
    (dict(epochs=1), {"netg.pth", "netd.pth", "netg_0001.pth", "netd_0001.pth", "resume.pt"}),
    (dict(epochs=2, save_every=1), {"netg_0001.pth", "netd_0001.pth", "netg_0002.pth", "netd_0002.pth"}),
], ids=["epochs=1", "epochs=2,save_every=1"])  # fmt: skip
def test_a_worker_killed_as_its_epoch_checkpoint_lands_keeps_the_epoch(server, config, checkpoints):
    run = server.create(**config)
    pid = wait_for(lambda: server.run(run["id"])["pid"], what="the worker")
    resume_pt = server.runs_dir / str(run["id"]) / "checkpoints" / "resume.pt"
    wait_for(resume_pt.exists, 300, interval=0.002, what="the first checkpoint")
    os.kill(pid, signal.SIGKILL)  # the epoch message is journalled, not yet acknowledged

    ended = server.wait_status(run["id"], "completed", "failed")
    if ended["status"] == "failed":  # killed before its `completed` reached the journal
        assert server.client.post(f"/api/runs/{run['id']}/resume").status_code == 200
        server.wait_status(run["id"], "completed", "failed")
    assert_whole(server, run["id"], list(range(1, config["epochs"] + 1)), checkpoints)


def test_a_server_down_longer_than_the_workers_wait_loses_nothing(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = start_server(runs, **ACK_WAIT)
    run = first.create(epochs=2)
    wait_for(lambda: first.run(run["id"])["step"] >= 20, what="step 20")
    pid = first.run(run["id"])["pid"]
    kill_server(first)
    wait_for(lambda: not alive(pid), 300, what="the worker to finish and stop waiting for the server")
    assert "the journal holds it" in (runs / str(run["id"]) / "worker.log").read_text()

    second = start_server(runs, port=port_of(first), **ACK_WAIT)
    try:
        assert_whole(second, run["id"], [1, 2], {"netg.pth", "netd.pth", "netg_0002.pth", "resume.pt"})
    finally:
        second.stop()


def test_a_worker_that_trains_to_the_end_while_the_server_is_down_the_whole_time(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = start_server(runs, **ACK_WAIT)
    run = first.create(epochs=1)
    pid = wait_for(lambda: first.run(run["id"])["pid"], what="the worker")
    kill_server(first)  # the worker is still importing torch: it never reaches this server
    wait_for(lambda: not alive(pid), 300, what="the worker to finish")
    with sqlite3.connect(runs / "ganboard.db") as db:
        assert db.execute("SELECT count(*) FROM metrics").fetchone() == (0,)

    second = start_server(runs, port=port_of(first), **ACK_WAIT)
    try:
        assert_whole(second, run["id"], [1], {"netg.pth", "netd.pth", "netg_0001.pth", "netd_0001.pth", "resume.pt"})
    finally:
        second.stop()


def test_the_database_deleted_while_serving_is_restored_and_nothing_is_lost(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = start_server(runs)
    run = first.create(epochs=2)
    wait_for(lambda: first.run(run["id"])["step"] >= 10, what="step 10")
    (runs / "ganboard.db").unlink()
    log = tmp_path / f"server-{port_of(first)}.log"
    wait_for(lambda: "is restored" in log.read_text(), 30, what="the server to notice")
    assert "was deleted while the server uses it" in log.read_text()
    later = first.create(epochs=1, max_steps=3)  # a write after the restore
    first.wait_status(later["id"], "completed", "failed")
    first.stop()

    second = start_server(runs, port=port_of(first))
    try:
        assert_whole(second, run["id"], [1, 2], {"netg.pth", "netg_0002.pth"})
        assert second.run(later["id"])["status"] == "completed"
        assert all_steps(second, later["id"]) == [1, 2, 3]
    finally:
        second.stop()


def test_a_long_journal_is_replayed_while_the_server_serves(tmp_path):
    """A worker trained to its end while the server was down: 20,000 journal lines. The server serves before the
    replay ends (it held the start for the whole replay: minutes), leaves the run alone until then (its worker is
    gone: reconciled first, it would be `interrupted`), an open page sees `replaying` until it caught up, and the run
    ends with every step stored once and the journal's `completed`."""
    runs, lines = tmp_path / "runs", 20_000
    (runs / "1").mkdir(parents=True)
    sessions = make_sessionmaker(make_engine(f"sqlite:///{runs / 'ganboard.db'}"))
    with sessions.begin() as s:
        s.add(Run(id=1, name="r", config={"batch_size": 4}, status="running", attempt=1, executor="local"))
    sessions.kw["bind"].dispose()
    steps = 2 * (lines - 2)
    start = StatusMessage(seq=1, attempt=1, status="running", step=0, epoch=0, total_steps=steps, total_epochs=1,
                          device="cpu")  # fmt: skip
    done = StatusMessage(seq=lines, attempt=1, status="completed", step=steps, epoch=1)
    append(runs / "1", start, *(batch(seq, 2 * seq - 3, 2 * seq - 2) for seq in range(2, lines)), done)
    server = start_server(runs, replayed=False)
    try:
        first = server.run(1)
        assert first["status"] in ("running", "completed"), first  # never interrupted: left alone until replayed
        with connect(f"{server.ws_url}/ws/runs/1") as page:  # a page open meanwhile catches up: fresh snapshots
            newest, shown = 0, None
            while shown is None or shown["replaying"]:
                for msg in page_messages(page.recv(timeout=600)):
                    if msg["type"] == "snapshot":
                        newest, shown = max([newest, *msg["metrics"]["step"]]), msg["run"]
        assert newest == steps and shown["status"] == "completed", shown
        run = server.run(1)
        assert run["status"] == "completed" and not run["replaying"], run
        assert all_steps(server, 1) == list(range(1, steps + 1))  # each once
        # It served before the replay ended (the old code held its start for the whole replay), in the server's own
        # order of events rather than by a race with this test's first request:
        log = next(tmp_path.glob("server-*.log")).read_text()
        assert log.index("Application startup complete") < log.index("from the runs' journals"), log
    finally:
        server.stop()
