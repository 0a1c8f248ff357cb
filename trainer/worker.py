"""The worker process the dashboard starts for a run: trains it and reports what happens to the server.

    python -m trainer.worker --run-dir runs/<id> --run-id <id> --server ws://127.0.0.1:PORT --attempt K [--resume]

The run's token comes in the GANBOARD_WORKER_TOKEN environment variable. Every message is appended to the run's
journal (trainer/journal.py) before it is sent: the journal is the record, the websocket only the fast path. So the
worker never gives up on a server that is down: it trains on, waits a bounded time for acknowledgements at the end
(GANBOARD_ACK_WAIT_SECONDS, default 60) and exits normally; the server replays the journal when it comes back.
SIGTERM finishes the batch, writes a checkpoint and ends the run `cancelled`.

A run with `gpus: N > 1` is trained by N processes that torchrun starts (`train_ranks`, trainer/rank.py): rank 0
reports as this process would; this one waits, and reports `failed` naming the rank that failed first.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.journal import JournalWriter, read_lines
from trainer.protocol import CHECKPOINTS_DIR, JOURNAL, LATEST, RESUME, SAMPLES_DIR, Ack, BatchMessage, EpochMessage
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

    def __init__(self, url: str, token: str, attempt: int, journal: Path, connect=None, seq: int = 0, ranks: int = 1):
        """`seq`: the last message number of this attempt already journalled (by rank 0, when the worker reports after
        its ranks); `ranks`: training processes sharing the CPU threads the server sends."""
        from websockets.sync.client import connect as ws_connect

        self.url, self.token, self.attempt = url, token, attempt
        self.connect = connect or ws_connect
        self.run_dir = journal.parent
        self.journal = JournalWriter(journal)
        self.pending: dict[int, str] = {}  # seq -> message, sent on this connection, until acknowledged
        self.seq = seq
        self.ranks = ranks
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

    def cpu_threads(self) -> int | None:
        """The torch threads each of the run's processes should train with now: the share of the cores the server last
        sent (with every acknowledgement, to a run on the CPU), split among its ranks; None before the first."""
        return self.threads and max(1, self.threads // self.ranks)

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
                    ack = Ack.model_validate_json(ws.recv(timeout=0 if batch else 0.05))
                except TimeoutError:
                    break
                self.threads = ack.threads
                with self.changed:
                    self.pending.pop(ack.seq, None)
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


def parse_args(argv: list[str] | None = None, prog: str = "python -m trainer.worker") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--run-id", required=True, type=int)
    parser.add_argument("--server", required=True, help="ws://host:port of the dashboard")
    parser.add_argument("--token", help="the run's token; better in GANBOARD_WORKER_TOKEN, which `ps` does not show")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--device", help="overrides the config's device (the supervisor picks the GPU)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    return parser.parse_args(argv)


def _sink(args: argparse.Namespace, **kw) -> WsSink:
    token = args.token or os.environ.get("GANBOARD_WORKER_TOKEN", "")
    url = f"{args.server.rstrip('/')}/ws/worker/{args.run_id}"
    return WsSink(url, token, args.attempt, args.run_dir / JOURNAL, **kw)


def _close(sink: WsSink) -> None:
    wait = float(os.environ.get("GANBOARD_ACK_WAIT_SECONDS", ACK_WAIT_SECONDS))
    if not sink.close(timeout=wait):
        log.warning("the server did not confirm everything within %.0f s; the journal holds it for its replay", wait)


@contextmanager
def report_to_server(args: argparse.Namespace, device: str, ranks: int = 1) -> Iterator[WsSink]:
    """The sink the loop reports to, and machine samples, for the duration; at the end, a bounded wait for the server's
    acknowledgements. An error raised inside that the loop did not report is reported `failed`, then raised."""
    sink, sampler = _sink(args, ranks=ranks), None
    try:
        sampler = SystemSampler(sink.on_system, lambda: sink.step, gpu=_training_gpu(device)).start()
        yield sink
    except Exception as e:
        log.exception("run %s failed", args.run_id)
        if sink.status != "failed" and ranks == 1:  # with several ranks the worker reports it, once they all ended
            sink.on_status("failed", error=f"{type(e).__name__}: {e}")  # failed before the loop could say so
        raise
    finally:
        if sampler:
            sampler.stop()
        _close(sink)


def report_failure(args: argparse.Namespace, error: str, traceback: str | None = None, seq: int = 0) -> int:
    """Report the run `failed` from this process (nothing else reports for it); returns the worker's exit code."""
    sink = _sink(args, seq=seq)
    sink.on_status("failed", error=error, traceback=traceback)
    _close(sink)
    return 1


def train_ranks(args: argparse.Namespace, gpus: int, device: str) -> int:
    """Train on `gpus` processes started by torchrun's launcher, run here in-process so that its failures come back
    as objects: each rank's exit code and, from torchrun's error files, its error. SIGTERM to this process reaches
    every rank (torchrun forwards it, and kills what has not ended 30 s later)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    import torch

    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if not on_cpu and torch.cuda.device_count() < gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
        return report_failure(args, f"gpus: {gpus} processes need {gpus} GPUs; this worker sees "
                                    f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES={visible})")  # fmt: skip
    threads = max(1, (args.threads or len(os.sched_getaffinity(0))) // gpus)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torchrun's default is 1
    if on_cpu:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo on one box: the loopback, whatever the hostname says
    if args.token:
        os.environ["GANBOARD_WORKER_TOKEN"] = args.token  # the ranks' environment, not their argv
    rank_argv = ["--run-dir", str(args.run_dir), "--run-id", str(args.run_id), "--server", args.server,
                 "--attempt", str(args.attempt), *(["--device", args.device] if args.device else []),
                 *(["--resume"] if args.resume else []),
                 *(["--threads", str(args.threads)] if args.threads else [])]  # fmt: skip
    launch = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(gpus), "--module", "trainer.rank",
                                           *rank_argv])  # fmt: skip
    log.info("training on %d processes with torchrun (%d torch threads each on the CPU)", gpus, threads)
    try:
        run(launch)
    except SignalException as e:  # a stop: the ranks heard it too; rank 0 saved and reported
        log.info("stopped by %s; the ranks have ended", e.sigval.name)
    except ChildFailedError as e:
        rank, failure = first_cause(e.failures)
        error, trace = rank_failure(rank, failure.exitcode, failure.signal_name(), failure.error_file_data)
        log.error("run %s failed: %s", args.run_id, error)
        return report_failure(args, error, trace, seq=_last_seq(args.run_dir / JOURNAL, args.attempt))
    return 0


def first_cause(failures: dict) -> tuple[int, object]:
    """The rank whose failure caused the others'. torchrun's own `get_first_failure` orders by a timestamp in whole
    seconds, taken when it noticed the failure unless the rank wrote an error file: a rank killed from outside and the
    rank torchrun then stopped with SIGTERM tie, and the tie went to rank 0. A signal other than SIGTERM came from
    outside, so it is the cause; SIGTERM is torchrun's (or the user's) stop, so it is a cause only when nothing else is;
    within each kind the earliest, then the lowest rank."""

    def order(rank: int) -> tuple[int, int, int]:
        f = failures[rank]
        kind = 0 if f.exitcode < 0 and f.exitcode != -signal.SIGTERM else 2 if f.exitcode == -signal.SIGTERM else 1
        return kind, f.timestamp, rank

    rank = min(failures, key=order)
    return rank, failures[rank]


def rank_failure(rank: int, exitcode: int, signal_name: str, error_data: dict) -> tuple[str, str | None]:
    """The run's error (and traceback, when the rank left one) for the rank that failed first."""
    if exitcode < 0:
        return f"rank {rank} was killed by {signal_name} (exit code {exitcode})", None
    message = error_data.get("message") or {}
    if isinstance(message, str):
        return f"rank {rank} exited with code {exitcode}: {message}", None
    text = message.get("message") or "no error file (see the worker log)"
    return f"rank {rank} exited with code {exitcode}: {text}", message.get("extraInfo", {}).get("py_callstack")


def _last_seq(journal: Path, attempt: int) -> int:
    """The number of the last message of `attempt` in the journal (0: none)."""
    last = 0
    for _, line in read_lines(journal):
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("attempt") == attempt:
            last = max(last, msg.get("seq", 0))
    return last


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from trainer.config import TrainConfig
    from trainer.loop import train

    try:
        cfg = TrainConfig.model_validate_json((args.run_dir / "config.json").read_text())
        if args.device:
            cfg = cfg.model_copy(update={"device": args.device})
    except Exception as e:
        log.exception("run %s: its config cannot be read", args.run_id)
        return report_failure(args, f"{type(e).__name__}: {e}")
    if cfg.gpus > 1:
        return train_ranks(args, cfg.gpus, cfg.device)  # SIGTERM: torchrun's handler once the ranks started
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with report_to_server(args, cfg.device) as sink:
            status = train(cfg, args.run_dir, sink, resume=args.resume, stop=stop,
                           threads=lambda: sink.cpu_threads() or args.threads)
        log.info("run %s %s", args.run_id, status)
    except Exception:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
