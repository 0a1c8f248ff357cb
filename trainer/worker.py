"""The worker process the dashboard starts for a run: trains it and reports what happens to the server.

    python -m trainer.worker --run-dir runs/<id> --run-id <id> --server ws://127.0.0.1:PORT --attempt K [--resume]

The run's token comes in the GANBOARD_WORKER_TOKEN environment variable. Every message is appended to the run's
journal (trainer/journal.py) before it is sent: the journal is the record, the websocket only the fast path. So the
worker never gives up on a server that is down: it trains on, waits a bounded time for acknowledgements at the end
(GANBOARD_ACK_WAIT_SECONDS, default 60) and exits normally; the server replays the journal when it comes back.
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
from collections.abc import Callable
from pathlib import Path

from trainer.journal import JournalWriter, read_lines
from trainer.protocol import CHECKPOINTS_DIR, JOURNAL, LATEST, RESUME, SAMPLES_DIR, BatchMessage, EpochMessage
from trainer.protocol import ScoreMessage, StatusMessage, StoppingMessage, SystemMessage, WorkerMessage
from trainer.protocol import epoch_checkpoint_names, parse_message
from trainer.protocol import sample_name
from trainer.system import Gpu, SystemSampler, pci_bus_id

log = logging.getLogger("ganboard.worker")
ACK_WAIT_SECONDS = 60.0
TEXT_LIMIT = 10_000  # StatusMessage.error and .traceback


class WsSink:
    """The loop's Sink: journals each message, then sends it over a websocket from a background thread; the loop never
    waits on the network.

    Before every connection attempt the sink forgets what it queued so far: all of it is in the journal, and the server
    replays the journal before it accepts a worker's connection. So only what was queued since the last attempt is kept
    in memory, sent and acknowledged, and memory stays bounded through an outage of any length.
    """

    def __init__(self, url: str, token: str, attempt: int, journal: Path, connect=None):
        from websockets.sync.client import connect as ws_connect

        self.url, self.token, self.attempt = url, token, attempt
        self.connect = connect or ws_connect
        self.run_dir = journal.parent
        self.journal = JournalWriter(journal)
        self.pending: dict[int, str] = {}  # seq -> message, sent on this connection, until acknowledged
        self.seq = 0
        self.connected = False  # the server has replayed the journal and is reading this connection
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.closing = False
        self.status: str | None = None  # the last status reported
        # The newest step reported, for the machine samples; None until the attempt says where it starts (a resumed
        # one starts at its checkpoint's step, and a sample saying 0 before that made a rate spike on the page).
        self.step: int | None = None
        self.threads: int | None = None  # the share of the cores the server last sent, when training on the CPU
        self.thread = threading.Thread(target=self._run, name="ws-sink", daemon=True)
        self.thread.start()

    # -- the Sink interface -------------------------------------------------------------------------------------------

    def on_batch(self, rows: dict[str, list]) -> None:
        self.step = rows["step"][-1] if rows["step"] else self.step
        self._queue(lambda seq: BatchMessage(seq=seq, attempt=self.attempt, rows=rows))
        self._follow_cpu_share()

    def _follow_cpu_share(self) -> None:
        """Train with the share of the cores the server last sent. Here, on the training thread: torch's thread count
        is OpenMP's, which is per thread."""
        import torch

        threads = self.threads
        if threads and threads != torch.get_num_threads():
            log.info("%d torch threads now (the CPU runs training share the cores)", threads)
            torch.set_num_threads(threads)

    def on_epoch(self, info: dict) -> None:
        self._queue(lambda seq: EpochMessage(seq=seq, attempt=self.attempt, **info), sync=True)

    def on_score(self, info: dict) -> None:
        self._queue(lambda seq: ScoreMessage(seq=seq, attempt=self.attempt, **info), sync=True)

    def on_stopping(self, step: int) -> None:
        log.info("stopping at step %d: saving a checkpoint", step)
        self._queue(lambda seq: StoppingMessage(seq=seq, attempt=self.attempt, step=step), sync=True)

    def on_status(self, status: str, **info) -> None:
        self.status = status
        self.step = info["step"] if info.get("step") is not None else self.step
        for key in ("error", "traceback"):
            if isinstance(info.get(key), str):
                info[key] = info[key][-TEXT_LIMIT:]
        self._queue(lambda seq: StatusMessage(seq=seq, attempt=self.attempt, status=status, **info), sync=True)
        if status == "running" and info["epoch"] > 0:
            self._report_unjournalled_epoch(info["epoch"], info["step"])

    def on_system(self, sample: dict) -> None:
        """From trainer/system.py's thread: the machine now (none before the attempt knows its starting step)."""
        if sample["step"] is None:
            return
        self._queue(lambda seq: SystemMessage(seq=seq, attempt=self.attempt, **sample))

    def _report_unjournalled_epoch(self, epoch: int, step: int) -> None:
        """The loop writes an epoch's grid and checkpoints before it reports the epoch, so a worker killed between the
        two leaves files no journal line names. A resumed attempt starts from those files: it reports that epoch."""
        if not (self.run_dir / SAMPLES_DIR / sample_name(epoch)).is_file():
            return
        for _, line in read_lines(self.run_dir / JOURNAL):
            if b'"type":"epoch"' in line and _epoch_of(line) == epoch:
                return
        names = [*LATEST, *epoch_checkpoint_names(epoch), RESUME]
        saved = [name for name in names if (self.run_dir / CHECKPOINTS_DIR / name).is_file()]
        log.info("epoch %d finished before the last worker was killed, unreported: reporting it now", epoch)
        self.on_epoch(dict(epoch=epoch, step=step, sample=sample_name(epoch), checkpoints=saved, images_per_s=0,
                           seconds=0))  # fmt: skip

    def _queue(self, make: Callable[[int], WorkerMessage], sync: bool = False) -> None:
        """Journal the message (fsync'd now for epochs and statuses, else at most every 0.5 s), then queue it."""
        with self.changed:
            text = make(self.seq + 1).model_dump_json()
            self.journal.write(text, sync=sync)
            self.seq += 1
            self.pending[self.seq] = text
            self.changed.notify_all()

    # -- the connection -----------------------------------------------------------------------------------------------

    def close(self, timeout: float) -> bool:
        """Wait until the server has everything (or the timeout); True when it has. The journal holds it either way."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self._delivered() and time.monotonic() < deadline:
                self.changed.wait(0.1)
            self.closing = True
            delivered = self._delivered()
            self.journal.close()
        return delivered

    def _delivered(self) -> bool:
        return self.connected and not self.pending

    def _run(self) -> None:
        backoff = 0.2
        while not self.closing:
            with self.changed:
                self.pending.clear()  # journalled before this attempt: the server replays it before accepting
            try:
                with self.connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                  open_timeout=30, close_timeout=1, ping_interval=5, ping_timeout=10) as ws:  # fmt: skip
                    with self.changed:
                        self.connected = True
                        self.changed.notify_all()
                    backoff = 0.2
                    self._pump(ws)
            except Exception as e:  # refused, reset, closed by the server: try again
                with self.changed:
                    self.connected = False
                if self.closing:
                    return
                log.info("connection to %s lost (%s); retrying in %.1f s", self.url, type(e).__name__, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _pump(self, ws) -> None:
        """Send what is pending in order and read acknowledgements, until the connection drops or the sink closes."""
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
                    self.threads = reply.get("threads")
                    with self.changed:
                        self.pending.pop(reply["seq"], None)
                        self.changed.notify_all()


def _epoch_of(line: bytes) -> int | None:
    """The epoch a journal line reports, or None for a line that is not a valid message (torn by a full disk or a
    kill): the server skips such a line, and so does this."""
    try:
        msg = parse_message(line)
    except ValueError:
        return None
    return msg.epoch if isinstance(msg, EpochMessage) else None


def _training_gpu(device: str) -> Gpu | None:
    """NVML's view of the GPU the loop will train on (it resolves the device the same way), or None on the CPU."""
    from trainer.hardware import resolve_device

    try:
        bus_id = pci_bus_id(resolve_device(device))
    except Exception:  # a device it cannot use: the loop reports why
        return None
    return Gpu(bus_id) if bus_id else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--run-id", required=True, type=int)
    parser.add_argument("--server", required=True, help="ws://host:port of the dashboard")
    parser.add_argument("--token", help="the run's token; better in GANBOARD_WORKER_TOKEN, which `ps` does not show")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--device", help="overrides the config's device (the supervisor picks the GPU)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from trainer.config import TrainConfig
    from trainer.loop import train

    token = args.token or os.environ.get("GANBOARD_WORKER_TOKEN", "")
    sink = WsSink(f"{args.server.rstrip('/')}/ws/worker/{args.run_id}", token, args.attempt, args.run_dir / JOURNAL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code, sampler = 0, None
    try:
        cfg = TrainConfig.model_validate_json((args.run_dir / "config.json").read_text())
        if args.device:
            cfg = cfg.model_copy(update={"device": args.device})
        sampler = SystemSampler(sink.on_system, lambda: sink.step, gpu=_training_gpu(cfg.device)).start()
        status = train(cfg, args.run_dir, sink, resume=args.resume, stop=stop, threads=args.threads)
        log.info("run %s %s", args.run_id, status)
    except Exception as e:
        log.exception("run %s failed", args.run_id)
        if sink.status != "failed":
            sink.on_status("failed", error=f"{type(e).__name__}: {e}")  # failed before the loop could say so
        code = 1
    if sampler:
        sampler.stop()
    wait = float(os.environ.get("GANBOARD_ACK_WAIT_SECONDS", ACK_WAIT_SECONDS))
    if not sink.close(timeout=wait):
        log.warning("the server did not confirm everything within %.0f s; the journal holds it for its replay", wait)
    return code


if __name__ == "__main__":
    sys.exit(main())
