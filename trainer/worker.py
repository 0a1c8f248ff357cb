"""The worker process the dashboard starts for a run: trains it and streams what happens to the server.

    python -m trainer.worker --run-dir runs/<id> --run-id <id> --server ws://127.0.0.1:PORT --attempt K [--resume]

The run's token comes in the GANBOARD_WORKER_TOKEN environment variable. Every message carries a sequence number;
unacknowledged ones are sent again after a reconnect, so a server restart loses nothing while training goes on.
SIGTERM finishes the batch, writes a checkpoint and ends the run `cancelled`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("ganboard.worker")


class WsSink:
    """The loop's Sink, sending over a websocket from a background thread; the loop never waits on the network."""

    def __init__(self, url: str, token: str, attempt: int, connect=None):
        from websockets.sync.client import connect as ws_connect

        self.url, self.token, self.attempt = url, token, attempt
        self.connect = connect or ws_connect
        self.pending: dict[int, str] = {}  # seq -> message, until acknowledged (dicts keep insertion order)
        self.seq = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.closing = False
        self.status: str | None = None  # the last status reported
        self.thread = threading.Thread(target=self._run, name="ws-sink", daemon=True)
        self.thread.start()

    # -- the Sink interface -------------------------------------------------------------------------------------------

    def on_batch(self, rows: dict[str, list]) -> None:
        self._queue("batch", {"rows": rows})

    def on_epoch(self, info: dict) -> None:
        self._queue("epoch", info)

    def on_status(self, status: str, **info) -> None:
        self.status = status
        self._queue("status", {"status": status, **info})

    def _queue(self, kind: str, payload: dict) -> None:
        with self.changed:
            self.seq += 1
            self.pending[self.seq] = json.dumps({"seq": self.seq, "attempt": self.attempt, "type": kind, **payload})
            self.changed.notify_all()

    # -- the connection -----------------------------------------------------------------------------------------------

    def close(self, timeout: float) -> bool:
        """Wait until every message is acknowledged (or the timeout); True when nothing is left unsent."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.pending and time.monotonic() < deadline:
                self.changed.wait(0.1)
            self.closing = True
            return not self.pending

    def _run(self) -> None:
        backoff = 0.2
        while not self.closing:
            try:
                with self.connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                  open_timeout=5, close_timeout=1, ping_interval=5, ping_timeout=10) as ws:  # fmt: skip
                    backoff = 0.2
                    self._pump(ws)
            except Exception as e:  # refused, reset, closed by the server: try again
                if self.closing:
                    return
                log.info("connection to %s lost (%s); retrying in %.1f s", self.url, type(e).__name__, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _pump(self, ws) -> None:
        """Send what is pending in order, read acknowledgements; after a reconnect everything unacknowledged is sent."""
        sent = 0
        while not self.closing:
            with self.changed:
                if not any(seq > sent for seq in self.pending):
                    self.changed.wait(0.05)
                batch = [(seq, msg) for seq, msg in self.pending.items() if seq > sent]
            for seq, msg in batch:
                ws.send(msg)
                sent = seq
            while True:
                try:
                    reply = json.loads(ws.recv(timeout=0 if batch else 0.05))
                except TimeoutError:
                    break
                if reply.get("type") == "ack":
                    with self.changed:
                        self.pending.pop(reply["seq"], None)
                        self.changed.notify_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--run-id", required=True, type=int)
    parser.add_argument("--server", required=True, help="ws://host:port of the dashboard")
    parser.add_argument("--token", help="the run's token; better in GANBOARD_WORKER_TOKEN, which `ps` does not show")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--device", help="overrides the config's device (the supervisor picks the GPU)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from trainer.config import TrainConfig
    from trainer.loop import train

    token = args.token or os.environ.get("GANBOARD_WORKER_TOKEN", "")
    sink = WsSink(f"{args.server.rstrip('/')}/ws/worker/{args.run_id}", token, args.attempt)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        cfg = TrainConfig.model_validate_json((args.run_dir / "config.json").read_text())
        if args.device:
            cfg = cfg.model_copy(update={"device": args.device})
        status = train(cfg, args.run_dir, sink, resume=args.resume, stop=stop)
        log.info("run %s %s", args.run_id, status)
    except Exception as e:
        log.exception("run %s failed", args.run_id)
        if sink.status != "failed":
            sink.on_status("failed", error=f"{type(e).__name__}: {e}")  # failed before the loop could say so
        code = 1
    if not sink.close(timeout=60):
        log.error("gave up waiting for the server: %d messages were not acknowledged", len(sink.pending))
    return code


if __name__ == "__main__":
    sys.exit(main())
