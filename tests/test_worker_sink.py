"""The worker's sink: every message journalled first; over a real websocket server that drops connections, or none at
all, nothing is lost and nothing is held in memory for long."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from websockets.sync.server import serve

from tests.harness import free_port, wait_for
from trainer.journal import read_lines
from trainer.protocol import CHECKPOINTS_DIR, JOURNAL, ROW_COLUMNS, SAMPLES_DIR, Ack, parse_message
from trainer.worker import WsSink


def rows(*steps: int) -> dict[str, list]:
    """A valid columnar chunk of batch rows (trainer.protocol.Rows) for these steps."""
    cols = {c: [0.5] * len(steps) for c in ROW_COLUMNS}
    return {**cols, "step": list(steps), "epoch": [1] * len(steps), "batch": [s - 1 for s in steps]}


class FlakyServer:
    """Acknowledges what it receives, and drops every connection after `drop_every` messages. Like the real server, it
    replays the run's journal before it accepts a connection (see app/storage/journal.py)."""

    def __init__(self, drop_every: int, journal: Path | None = None, port: int | None = None):
        self.received: list[dict] = []
        self.connections = 0
        self.drop_every, self.journal = drop_every, journal
        self.port = port or free_port()
        self.server = serve(self.handle, "127.0.0.1", self.port, process_request=self.replay)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def replay(self, connection, request):
        assert request.headers["Authorization"] == "Bearer secret"
        if self.journal and self.journal.exists():
            self.received += [json.loads(line) for _, line in read_lines(self.journal)]

    def handle(self, ws):
        self.connections += 1
        for count, text in enumerate(ws, 1):
            msg = json.loads(text)
            self.received.append(msg)
            if count % self.drop_every == 0:  # the connection dies before this one is acknowledged
                ws.socket.shutdown(socket.SHUT_RDWR)
                return
            ws.send(json.dumps({"type": "ack", "seq": msg["seq"]}))

    def stored(self) -> dict[tuple[int, int], dict]:
        """What a server storing once per (attempt, seq) keeps."""
        out: dict[tuple[int, int], dict] = {}
        for msg in self.received:
            out.setdefault((msg["attempt"], msg["seq"]), msg)
        return out


def journal_of(path: Path) -> list[dict]:
    return [parse_message(line).model_dump(mode="json") for _, line in read_lines(path)]


def test_messages_survive_dropped_connections_and_arrive_in_order(tmp_path):
    server = FlakyServer(drop_every=7, journal=tmp_path / JOURNAL)
    sink = WsSink(f"ws://127.0.0.1:{server.port}/ws/worker/1", "secret", 3, tmp_path / JOURNAL)
    for step in range(1, 101):
        sink.on_batch(rows(step))
        if step % 10 == 0:
            time.sleep(0.05)  # let some go over the socket, between the drops
    sink.on_status("completed", step=100, epoch=1)
    assert sink.close(timeout=60)
    server.server.shutdown()

    stored = server.stored()
    assert sorted(stored) == [(3, seq) for seq in range(1, 102)]
    assert [stored[(3, s)]["rows"]["step"] for s in range(1, 101)] == [[s] for s in range(1, 101)]
    assert stored[(3, 101)]["status"] == "completed"
    assert server.connections >= 2  # it really did reconnect
    assert [m["seq"] for m in journal_of(tmp_path / JOURNAL)] == list(range(1, 102))


def test_a_long_outage_neither_blocks_training_nor_grows_memory(tmp_path):
    port = free_port()
    sink = WsSink(f"ws://127.0.0.1:{port}/ws/worker/1", "secret", 1, tmp_path / JOURNAL)
    for step in range(1, 1001):  # nobody listens: journalled at once, never waited for
        sink.on_batch(rows(step))
    assert len(journal_of(tmp_path / JOURNAL)) == 1000
    wait_for(lambda: not sink.pending, 10, what="the sink to drop what the journal holds")  # at its next attempt
    sink.on_batch(rows(1001))
    server = FlakyServer(drop_every=10**9, journal=tmp_path / JOURNAL, port=port)
    assert sink.close(timeout=60)  # connected: the server replayed the journal, then took the rest
    assert sorted(server.stored()) == [(1, seq) for seq in range(1, 1002)]
    server.server.shutdown()


class FakeSocket:
    """Stands in for a websockets connection: records what is sent, answers with the acks the test queues."""

    def __init__(self, log: list, ack: bool = True):
        self.log, self.ack, self.replies = log, ack, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def send(self, text: str) -> None:
        msg = json.loads(text)
        self.log.append(msg)
        if self.ack:
            self.replies.append(json.dumps({"type": "ack", "seq": msg["seq"]}))
            self.replies.append(json.dumps({"type": "ack", "seq": msg["seq"]}))  # a duplicate ack is harmless

    def recv(self, timeout=None):
        if self.replies:
            return self.replies.pop(0)
        if timeout:
            time.sleep(timeout)
        raise TimeoutError


def test_backoff_then_send_in_order_with_the_token_and_exit_clean(tmp_path):
    sent: list[dict] = []
    calls: list[tuple] = []

    def connect(url, **kw):
        calls.append((url, kw["additional_headers"]))
        if len(calls) <= 3:  # the server is not up yet
            raise ConnectionRefusedError
        return FakeSocket(sent)

    sink = WsSink("ws://x/ws/worker/5", "tok", 2, tmp_path / JOURNAL, connect=connect)
    sink.on_status("running", step=0, epoch=0, total_steps=2, total_epochs=1, device="cpu")  # journalled, then dropped
    wait_for(lambda: sink.connected, 30, what="the fourth attempt")
    sink.on_batch(rows(1, 2))
    sink.on_epoch({"epoch": 1, "step": 2, "sample": "epoch_0001.png", "images_per_s": 1.0, "seconds": 1.0})
    sink.on_status("completed", step=2, epoch=1)
    assert sink.close(timeout=30)
    assert all(c == ("ws://x/ws/worker/5", {"Authorization": "Bearer tok"}) for c in calls) and len(calls) == 4
    assert [(m["seq"], m["attempt"], m["type"]) for m in sent] == [(2, 2, "batch"), (3, 2, "epoch"), (4, 2, "status")]
    assert sent[0]["rows"]["step"] == [1, 2] and sent[1]["sample"] == "epoch_0001.png" and sent[2]["status"] == "completed"
    assert [(m["seq"], m["type"]) for m in journal_of(tmp_path / JOURNAL)] == [
        (1, "status"), (2, "batch"), (3, "epoch"), (4, "status")
    ]


def test_the_servers_share_of_the_cores_comes_with_its_acknowledgements_split_among_the_ranks(tmp_path):
    """protocol.Ack carries a CPU run's torch threads; a run on two processes trains each with half."""
    class Sharing(FakeSocket):
        def send(self, text: str) -> None:
            self.log.append(msg := json.loads(text))
            self.replies.append(Ack(seq=msg["seq"], threads=6).model_dump_json(exclude_none=True))

    sent: list[dict] = []
    sink = WsSink("ws://x/ws/worker/1", "tok", 1, tmp_path / JOURNAL, connect=lambda url, **kw: Sharing(sent), ranks=2)
    assert sink.cpu_threads() is None  # none heard yet: the loop keeps the threads it started with
    sink.on_batch(rows(1))
    wait_for(lambda: sink.cpu_threads() == 3, 10, what="the acknowledgement's share")
    assert sink.close(timeout=10)


def test_close_gives_up_after_its_timeout_when_nothing_is_acknowledged(tmp_path):
    sent: list[dict] = []
    sink = WsSink("ws://x/ws/worker/1", "tok", 1, tmp_path / JOURNAL, connect=lambda url, **kw: FakeSocket(sent, ack=False))
    wait_for(lambda: sink.connected, 10, what="the connection")
    sink.on_status("completed", step=1, epoch=1)
    assert not sink.close(timeout=0.5)
    assert list(sink.pending) == [1] and sent and sent[0]["seq"] == 1
    assert journal_of(tmp_path / JOURNAL)[0]["status"] == "completed"  # the journal has it for the server's replay


def test_a_message_the_protocol_refuses_never_reaches_the_journal(tmp_path):
    sink = WsSink(f"ws://127.0.0.1:{free_port()}/ws/worker/1", "tok", 1, tmp_path / JOURNAL)
    with pytest.raises(ValidationError, match="time"):
        sink.on_batch({**rows(1), "time": [float("nan")]})
    sink.on_batch(rows(1))
    sink.close(timeout=0)
    assert [m["seq"] for m in journal_of(tmp_path / JOURNAL)] == [1]  # no gap in the numbering either


def test_a_resumed_attempt_reports_the_finished_epoch_its_killed_predecessor_did_not(tmp_path):
    """Killed between its epoch-2 checkpoint and the epoch message: the files are there, the journal does not say so."""
    (tmp_path / SAMPLES_DIR).mkdir()
    (tmp_path / CHECKPOINTS_DIR).mkdir()
    for path in (f"{SAMPLES_DIR}/epoch_0001.png", f"{SAMPLES_DIR}/epoch_0002.png", f"{CHECKPOINTS_DIR}/netg_0002.pth",
                 f"{CHECKPOINTS_DIR}/netg.pth", f"{CHECKPOINTS_DIR}/resume.pt"):  # fmt: skip
        (tmp_path / path).write_bytes(b"x")
    first = WsSink(f"ws://127.0.0.1:{free_port()}/ws/worker/1", "tok", 1, tmp_path / JOURNAL)
    first.on_epoch({"epoch": 1, "step": 16, "sample": "epoch_0001.png", "images_per_s": 1.0, "seconds": 1.0})
    first.close(timeout=0)

    for attempt in (2, 3):  # the second resume finds epoch 2 reported and reports nothing
        sink = WsSink(f"ws://127.0.0.1:{free_port()}/ws/worker/1", "tok", attempt, tmp_path / JOURNAL)
        sink.on_status("running", step=32, epoch=2, total_steps=64, total_epochs=4, device="cpu")
        sink.close(timeout=0)
    lines = journal_of(tmp_path / JOURNAL)
    assert [(m["attempt"], m["type"], m.get("epoch")) for m in lines] == [
        (1, "epoch", 1), (2, "status", 2), (2, "epoch", 2), (3, "status", 2)
    ]
    assert lines[2]["sample"] == "epoch_0002.png" and lines[2]["checkpoints"] == ["netg.pth", "netg_0002.pth", "resume.pt"]


def test_the_worker_reports_a_failure_before_training_and_exits_1(tmp_path, monkeypatch):
    from trainer import worker

    server = FlakyServer(drop_every=10**9, journal=tmp_path / JOURNAL)
    monkeypatch.setenv("GANBOARD_WORKER_TOKEN", "secret")
    previous = signal.getsignal(signal.SIGTERM)
    try:  # no config.json in the run dir: the worker says why, then exits 1
        code = worker.main(["--run-dir", str(tmp_path), "--run-id", "1", "--server", f"ws://127.0.0.1:{server.port}"])
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server.shutdown()
    assert code == 1
    (status,) = server.stored().values()
    assert status["type"] == "status" and status["status"] == "failed" and "config.json" in status["error"]


def test_with_no_server_the_worker_waits_its_ack_limit_and_exits_normally(tmp_path):
    """A worker never gives up on its data: the journal has it, and the limit only bounds the wait at the end."""
    env = {**os.environ, "GANBOARD_WORKER_TOKEN": "secret", "GANBOARD_ACK_WAIT_SECONDS": "1"}
    cmd = [sys.executable, "-m", "trainer.worker", "--run-dir", str(tmp_path), "--run-id", "1",
           "--server", f"ws://127.0.0.1:{free_port()}"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "the journal holds it" in r.stderr  # 1: no config.json, as above
    (status,) = journal_of(tmp_path / JOURNAL)
    assert status["status"] == "failed" and "config.json" in status["error"]


def test_no_machine_sample_before_the_attempt_says_its_starting_step(tmp_path):
    """A resumed attempt starts at its checkpoint's step: a sample saying step 0 before that made a rate spike."""
    server = FlakyServer(drop_every=1000)
    sink = WsSink(f"ws://127.0.0.1:{server.port}/ws/worker/1", "secret", 2, tmp_path / JOURNAL)
    sample = {"time": 1.7e9, "cpu_percent": 100.0, "rss_mb": 500.0}
    sink.on_system({**sample, "step": sink.step})  # as trainer/system.py calls it, while the data loads
    sink.on_status("running", step=0, epoch=0, total_steps=10, total_epochs=1, batches_per_epoch=10, device="cpu")
    sink.on_system({**sample, "step": sink.step})
    assert sink.close(timeout=30)
    server.server.shutdown()
    assert [(m["type"], m.get("step")) for m in journal_of(tmp_path / JOURNAL)] == [("status", 0), ("system", 0)]


def test_bad_arguments_exit_2():
    r = subprocess.run([sys.executable, "-m", "trainer.worker", "--run-id", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
