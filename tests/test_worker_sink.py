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
