"""The worker's sink against a real websocket server that drops connections: nothing lost, resent in order."""

from __future__ import annotations

import json
import socket
import threading

from websockets.sync.server import serve

from tests.conftest import free_port, wait_for
from trainer.worker import WsSink


class FlakyServer:
    """Acknowledges what it receives, and drops every connection after `drop_every` messages."""

    def __init__(self, drop_every: int):
        self.received: list[dict] = []
        self.connections = 0
        self.drop_every = drop_every
        self.port = free_port()
        self.server = serve(self.handle, "127.0.0.1", self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, ws):
        self.connections += 1
        assert ws.request.headers["Authorization"] == "Bearer secret"
        for count, text in enumerate(ws, 1):
            msg = json.loads(text)
            self.received.append(msg)
            if count % self.drop_every == 0:  # the connection dies before this one is acknowledged: sent again
                ws.socket.shutdown(socket.SHUT_RDWR)
                return
            ws.send(json.dumps({"type": "ack", "seq": msg["seq"]}))


def test_messages_survive_dropped_connections_and_arrive_in_order():
    server = FlakyServer(drop_every=7)
    sink = WsSink(f"ws://127.0.0.1:{server.port}/ws/worker/1", "secret", attempt=3)
    for step in range(1, 101):
        sink.on_batch({"step": [step]})
    sink.on_status("completed", step=100)
    assert sink.close(timeout=60)
    server.server.shutdown()

    stored = {}
    for msg in server.received:  # what a server storing once per (attempt, seq) would keep
        stored.setdefault((msg["attempt"], msg["seq"]), msg)
    assert sorted(stored) == [(3, seq) for seq in range(1, 102)]
    assert [stored[(3, s)]["rows"]["step"][0] for s in range(1, 101)] == list(range(1, 101))
    assert stored[(3, 101)]["status"] == "completed"
    assert server.connections > 10  # it really did reconnect


def test_sink_never_blocks_training_while_the_server_is_down():
    port = free_port()
    sink = WsSink(f"ws://127.0.0.1:{port}/ws/worker/1", "secret", attempt=1)
    for step in range(1000):  # nobody listens: queued, not blocked
        sink.on_batch({"step": [step]})
    assert len(sink.pending) == 1000
    server = FlakyServer(drop_every=10**9)
    server.port = port
    late = serve(server.handle, "127.0.0.1", port)
    threading.Thread(target=late.serve_forever, daemon=True).start()
    wait_for(lambda: not sink.pending, 60, what="the backlog to drain")
    assert [m["seq"] for m in server.received] == list(range(1, 1001))
    sink.close(1)
    late.shutdown()


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
        raise TimeoutError


def test_backoff_then_send_in_order_with_the_token_and_exit_clean():
    sent: list[dict] = []
    calls: list[tuple] = []

    def connect(url, **kw):
        calls.append((url, kw["additional_headers"]))
        if len(calls) <= 3:  # the server is not up yet
            raise ConnectionRefusedError
        return FakeSocket(sent)

    sink = WsSink("ws://x/ws/worker/5", "tok", attempt=2, connect=connect)
    sink.on_status("running", step=0, epoch=0)
    sink.on_batch({"step": [1, 2]})
    sink.on_epoch({"epoch": 1, "sample": "epoch_0001.png"})
    sink.on_status("completed", step=2, epoch=1)
    assert sink.close(timeout=30)
    assert all(c == ("ws://x/ws/worker/5", {"Authorization": "Bearer tok"}) for c in calls) and len(calls) == 4
    assert [(m["seq"], m["attempt"], m["type"]) for m in sent] == [(1, 2, "status"), (2, 2, "batch"), (3, 2, "epoch"), (4, 2, "status")]
    assert sent[1]["rows"] == {"step": [1, 2]} and sent[2]["sample"] == "epoch_0001.png" and sent[3]["status"] == "completed"


def test_close_gives_up_after_its_timeout_when_nothing_is_acknowledged():
    sent: list[dict] = []
    sink = WsSink("ws://x/ws/worker/1", "tok", attempt=1, connect=lambda url, **kw: FakeSocket(sent, ack=False))
    sink.on_status("completed", step=1, epoch=1)
    assert not sink.close(timeout=0.5)
    assert list(sink.pending) == [1] and sent and sent[0]["seq"] == 1


def test_the_worker_reports_a_failure_before_training_and_exits_1(tmp_path, monkeypatch):
    import signal

    from trainer import worker

    server = FlakyServer(drop_every=10**9)
    monkeypatch.setenv("GANBOARD_WORKER_TOKEN", "secret")
    previous = signal.getsignal(signal.SIGTERM)
    try:  # no config.json in the run dir: the worker says why, then exits 1
        code = worker.main(["--run-dir", str(tmp_path), "--run-id", "1", "--server", f"ws://127.0.0.1:{server.port}"])
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server.shutdown()
    assert code == 1
    (status,) = server.received
    assert status["type"] == "status" and status["status"] == "failed" and "config.json" in status["error"]


def test_bad_arguments_exit_2():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "trainer.worker", "--run-id", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
