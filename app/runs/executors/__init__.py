"""Where a run's worker runs: the small interface the supervisor asks, and the executors behind it.

An executor launches one attempt's worker (`python -m trainer.worker ...`), re-attaches to one a previous server
started, tells how each of its workers is (pending, running or ended, with the reason in words), asks one to stop (it
finishes its batch, saves a checkpoint and reports `cancelled`) and kills one. It never writes a run: the supervisor
holds the queue and the lifecycle, and decides what each state means for the run.

- `local` (app/runs/executors/local.py): a subprocess of the server, one GPU each; the server's `max_concurrent` limits them.
- `slurm` (app/runs/executors/slurm.py): one `sbatch` job per attempt; the cluster queues them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from app import gpus
from app.storage.db import Run


class Pending(NamedTuple):
    """Waiting for the executor to start it (a Slurm job in the queue), with the executor's reason."""

    reason: str

    def __str__(self) -> str:
        return f"pending: {self.reason}"


class Running(NamedTuple):
    where: str  # "pid 1234", "Slurm job 7 on node3"

    def __str__(self) -> str:
        return f"running: {self.where}"


class Ended(NamedTuple):
    """Its process is gone. `reason` says how, for a run it did not report the end of; `interrupted`: by something
    outside the run (a time limit, a preemption, a failed node), so it is worth resuming as it is; `stopped`: the
    executor stopped it (a cluster's scancel or time limit), perhaps with a SIGTERM that the worker answered by saving
    and reporting `cancelled` itself; `requeue_after`: by something a new job gets past (Slurm's time limit, a
    preemption), so the run may be requeued by itself (docs/cluster.md)."""

    code: int | None
    reason: str
    interrupted: bool = False
    stopped: bool = False
    requeue_after: str | None = None  # what ended it, in words, when the run may ask to start again by itself

    def __str__(self) -> str:
        return f"ended: {self.reason}"


State = Pending | Running | Ended


class LaunchError(Exception):
    """The executor could not start the worker; the message says why (the run fails with it)."""


@dataclass(frozen=True)
class Launch:
    """One attempt of a run, as the supervisor asks for it."""

    run_id: int
    attempt: int
    run_dir: Path
    args: list[str]  # after `python -m trainer.worker`; never a secret (`ps` shows them)
    env: dict[str, str]  # the whole environment of the worker: its run's token, never the admin token
    log: Path  # its stdout and stderr, appended
    gpus: int = 1  # its training processes, one GPU each on a GPU (the config's `gpus`)
    resources: dict | None = None  # the run's own resources in its executor (a Slurm job's); None: the settings'


@dataclass
class Worker:
    """One attempt's worker in an executor: `job_id` is a pid (local) or a Slurm job id."""

    executor: str
    job_id: str
    attempt: int
    gpu: str | None = gpus.UNKNOWN  # local: its CUDA_VISIBLE_DEVICES, gpus.ON_CPU on the CPU (app/gpus.py)
    handle: Any = None  # the executor's own (a Popen)
    state: State = field(default_factory=lambda: Running("starting"))
    kill_at: float | None = None  # asked to stop; killed after this time.monotonic()
    stopped_at: int | None = None  # the step at which the worker said it heard the stop (its grace counts from then)
    shown: str | None = None  # the state the run's job_state was last given


class Executor(Protocol):
    name: str
    queues_itself: bool  # True: the executor queues its runs (a cluster); False: the server's max_concurrent does

    def place(self, device: str, busy: list[str | None], count: int = 1) -> tuple[str | None, str]:
        """(the GPU the worker gets from the server, or None; the device it trains on) for a config's `device`."""

    def launch(self, launch: Launch, gpu: str | None) -> Worker: ...

    def attach(self, run: Run) -> Worker | None:
        """The worker a previous server started for `run` (its job_id/pid), or None when it is certainly gone."""

    def poll(self, workers: list[Worker]) -> None:
        """Set each worker's `state` as the executor sees it now."""

    def stop(self, worker: Worker) -> None:
        """Ask it to end the way the worker handles (SIGTERM: save, report `cancelled`, exit)."""

    def kill(self, worker: Worker) -> None: ...
