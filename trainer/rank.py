"""One rank of a run on several processes, as torchrun starts it for the worker (trainer/worker.py `train_ranks`):

    python -m trainer.rank --run-dir runs/<id> --run-id <id> --server ws://... --attempt K [--resume] [--threads T]

Rank 0 reports exactly as a one-process worker does (its WsSink journals and sends; it samples the machine), except
`failed`: the worker reports that once every rank has ended, naming the rank that failed first (a rank that dies
cannot say so itself). The other ranks report nothing. SIGTERM asks for a stop, which the ranks agree on.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading

from torch.distributed.elastic.multiprocessing.errors import record

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """torchrun starts each rank in a session of its own: a worker killed -9 must not leave ranks training."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker's torchrun still ends its ranks when it can
        pass


class _FailureLater:
    """Rank 0's sink, with `failed` kept back for the worker to report (with the rank that failed first)."""

    def __init__(self, sink):
        self.sink = sink

    def __getattr__(self, name):
        return getattr(self.sink, name)

    def on_status(self, status: str, **info) -> None:
        if status != "failed":
            self.sink.on_status(status, **info)


@record
def main(argv: list[str] | None = None) -> int:
    from trainer.worker import parse_args, report_to_server

    args = parse_args(argv, prog="python -m trainer.rank")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")  # fmt: skip
    _die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    import torch

    from trainer.config import TrainConfig
    from trainer.distributed import NullSink, ProcessGroup
    from trainer.hardware import resolve_device
    from trainer.loop import train

    cfg = TrainConfig.model_validate_json((args.run_dir / "config.json").read_text())
    device = resolve_device(args.device or cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    cfg = cfg.model_copy(update={"device": str(device)})
    threads = max(1, (args.threads or len(os.sched_getaffinity(0))) // world)
    ranks = ProcessGroup(device)
    if rank:
        train(cfg, args.run_dir, NullSink(), resume=args.resume, stop=stop, threads=lambda: threads, ranks=ranks)
    else:
        with report_to_server(args, cfg.device, ranks=world) as sink:
            train(cfg, args.run_dir, _FailureLater(sink), resume=args.resume, stop=stop,
                  threads=lambda: sink.cpu_threads() or threads, ranks=ranks)
    ranks.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
