"""The supervisor: the queue of runs, and what a worker's life means for its run.

A run's status changes only through `app.storage.lifecycle.transition`. Every start of a run is a new attempt; a message or a
worker's end from an older attempt never changes a newer one. The tick and the API's actions (submit, cancel, resume)
take turns on one lock, so a run is never started and cancelled at once.

Where a worker runs is its executor's business (app/runs/executors/): the supervisor asks one to launch, poll, stop and kill
it, and turns what it says into the run's status. Local workers are at most `max_concurrent`; a cluster queues its own
jobs, and a run whose job waits there stays `queued` with the cluster's reason in `job_state`. Workers outlive a server
restart: at start-up a run left `running` (or queued with a job) is re-attached to its worker by pid or job id, and
marked `interrupted` when it is certainly gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app import gpus
from app.gpus import PlacementError
from app.runs.diskspace import Reserve, full_disk
from app.runs.executors import Ended, Executor, Launch, LaunchError, Pending, Running, Worker
from app.runs.executors.local import LocalExecutor
from app.runs.executors.slurm import SlurmExecutor
from app.runs.hub import Hub
from app.runs.ticker import every
from app.settings import Settings
from app.storage import journal
from app.storage.db import Checkpoint, Run, hash_token, utcnow
from app.storage.dbfile import DatabaseFile
from app.storage.json_view import replaying, run_json
from app.storage.lifecycle import TransitionError, transition
from app.storage.paths import check_paths
from app.storage.runfiles import claim
from trainer.protocol import ACTIVE, CHECKPOINTS_DIR, CONFIG, RESUMABLE, RESUME, SAMPLES_DIR, WORKER_LOG, Status

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5
REPLAY_PATIENCE = 10.0


def cpu_share(runs: int) -> int:
    """torch threads for each of `runs` workers training on the CPU at once: an equal share of the cores. Two runs of two
    threads each on 2 cores trained at 270 images/s each, against 620 each with one thread (and ~1,100 for one run
    alone): torch's OpenMP threads spin at every barrier, so a thread that waits for a preempted one burns the core the
    other needs."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, runs))


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(deque(text.splitlines(), lines))


def _listening_ports() -> list[int]:
    """TCP ports this process listens on (Linux /proc), so that `uvicorn --port N` works without GANBOARD_PORT."""
    try:
        inodes = set()
        for fd in Path("/proc/self/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = []
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
        return sorted(set(ports))
    except OSError:
        return []


def _changed(run: Run, changes: dict) -> dict:
    """The fields that put `changes` into the run's config and record them in its `changes`; none when nothing changes."""
    changed = {k: [run.config.get(k), v] for k, v in changes.items() if run.config.get(k) != v}
    if not changed:
        return {}
    record = {"at": utcnow().isoformat() + "Z", "step": run.step, "epoch": run.epoch, "changed": changed}
    return {"config": {**run.config, **changes}, "changes": [*(run.changes or []), record]}



class Supervisor:
    def __init__(self, settings: Settings, sessions: sessionmaker, hub: Hub):
        self.settings, self.sessions, self.hub = settings, sessions, hub
        self.executors: dict[str, Executor] = {"local": LocalExecutor()}
        if settings.executor == "slurm":
            self.executors["slurm"] = SlurmExecutor(settings)
        self.workers: dict[int, Worker] = {}  # by run id; at most one per run, reaped before the run starts again
        self.unreplayed: dict[int, float] = {}  # run id -> when its ended worker's journal replay first failed
        self.reserve = Reserve(settings.runs_dir)  # app/runs/diskspace.py
        self.lock = threading.Lock()  # the tick and the API's actions take turns
        self.dbfile = DatabaseFile(settings.database_url, sessions, settings.runs_dir)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- running the supervisor ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await run_in_threadpool(self.reconcile)
        self.task = asyncio.create_task(every(TICK_SECONDS, self.tick, "supervisor", self.wakeup))

    async def stop(self) -> None:
        """Stop supervising; the workers keep training and reconnect to the next server."""
        if self.task:
            self.task.cancel()

    def poke(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wakeup.set)

    def reconcile(self, only: int | None = None) -> None:
        """At start-up: re-attach the workers of runs left running, and the jobs of runs queued in a cluster; a run
        left running whose worker is gone is interrupted. A run whose journal is still being replayed waits (how it
        ended may be in the lines to come): `reconcile(only=its id)` once its replay ends (app/storage/journal.py Backlog)."""
        with self.lock:
            for run_id in self._ids((Run.status == Status.RUNNING) | ((Run.status == Status.QUEUED) & Run.job_id.is_not(None))):
                if (run_id == only) if only is not None else run_id not in replaying:
                    self._try(run_id, self._reattach)

    def _reattach(self, session: Session, run: Run) -> None:
        worker = self.executor(run).attach(run)
        if worker is not None:
            self.workers[run.id] = worker
            log.info("run %s: re-attached its worker (%s %s)", run.id, worker.executor, worker.job_id)
        elif run.status == Status.RUNNING:
            error = "the server stopped while this run trained, and its worker is gone; Resume continues it"
            transition(session, run, Status.INTERRUPTED, pid=None, job_id=None, job_state=None, error=error)
        else:
            run.job_id = run.job_state = None  # queued again, in this server's queue

    def executor(self, run: Run) -> Executor:
        """The run's executor; a run of an executor this server does not have (Slurm, no longer configured) is
        watched with its own so that it can end, but new runs go where the settings say."""
        name = run.executor or "local"
        if name not in self.executors:
            self.executors[name] = SlurmExecutor(self.settings)
        return self.executors[name]

    # -- the API's actions ---------------------------------------------------------------------------------------------

    def submit(self, session: Session, run: Run) -> None:
        """Commit a new run (a run is born queued), in a folder of its own, and wake the queue."""
        claim(self.run_dir(run.id))
        run.executor = run.executor or self.settings.executor
        session.commit()
        self._publish(run)
        self.poke()

    def cancel(self, run_id: int) -> Run:
        """Queued: cancelled at once (its job, when a cluster queues it, removed). Running: SIGTERM (the worker saves a
        checkpoint and reports `cancelled`), killed after the grace; if it ends without reporting, its end makes the
        run `cancelled`."""

        def cancel(session: Session, run: Run) -> None:
            if run.status not in ACTIVE:
                raise TransitionError(f"run {run.id} is {run.status}: only a queued or running run can be cancelled")
            worker = self.workers.get(run.id)
            ours = worker is not None and worker.attempt == run.attempt and worker.job_id == run.job_id
            if run.status == Status.QUEUED and ours:  # a job the cluster has not started
                self.executors[worker.executor].kill(worker)
                worker.kill_at = float("inf")
                transition(session, run, Status.CANCELLED, job_state=None)
            elif run.status == Status.QUEUED or worker is None or worker.attempt != run.attempt:
                transition(session, run, Status.CANCELLED)
            elif worker.kill_at is None:
                self.executors[worker.executor].stop(worker)
                worker.kill_at = time.monotonic() + self.settings.grace_seconds

        with self.lock:
            return self.change(run_id, cancel)

    def stopping(self, run_id: int, attempt: int, step: int) -> None:
        """A cancelled worker heard the stop at `step` and saves now: its grace counts from here, not from the signal
        (which a busy machine may take seconds to deliver and answer)."""
        worker = self.workers.get(run_id)
        if worker is not None and worker.attempt == attempt and worker.kill_at is not None:
            worker.kill_at, worker.stopped_at = time.monotonic() + self.settings.grace_seconds, step

    def resume(self, run_id: int, changes: dict | None = None) -> Run:
        """Queue an ended run again; it continues from resume.pt when there is one. `changes`: config values to train on
        from there (checked by the caller against config.RESUME_CHANGES), recorded in the run's `changes`."""

        def resume(session: Session, run: Run) -> None:
            if run.status not in RESUMABLE:
                raise TransitionError(f"run {run.id} is {run.status}: only a failed, cancelled or interrupted run resumes")
            if run.unresumable:
                raise TransitionError(f"run {run.id} cannot resume, it would fail the same way: {run.unresumable}")
            checkpoint = (self.run_dir(run.id) / CHECKPOINTS_DIR / RESUME).is_file()
            transition(session, run, Status.QUEUED, resume=checkpoint, error=None, job_id=None, job_state=None,
                       requeued=0, **_changed(run, changes or {}))  # a person's Resume starts the requeues' count again

        with self.lock:
            run = self.change(run_id, resume)
        self.poke()
        return run

    def extend(self, run_id: int, epochs: int) -> Run:
        """Queue a completed run again for `epochs` more epochs, from its resume.pt: the same run, its charts go on."""

        def extend(session: Session, run: Run) -> None:
            if run.status != Status.COMPLETED:
                raise TransitionError(f"run {run.id} is {run.status}: only a completed run trains more epochs (Resume the others)")
            if not (self.run_dir(run.id) / CHECKPOINTS_DIR / RESUME).is_file():
                raise TransitionError(f"run {run.id} has no {RESUME} to carry on from")
            more = {"epochs": run.config["epochs"] + epochs, "max_steps": None}  # a step limit would end it at once
            transition(session, run, Status.QUEUED, resume=True, error=None, job_id=None, job_state=None,
                       **_changed(run, more))

        with self.lock:
            run = self.change(run_id, extend)
        self.poke()
        return run

    # -- the queue -----------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Ask the executors how their workers are; reap the ended ones, follow the others; then start queued runs
        (local ones in the free slots). Each run in its own transaction."""
        with self.lock:
            self.dbfile.check()
            self.reserve.keep()
            for name, executor in self.executors.items():
                executor.poll([w for w in self.workers.values() if w.executor == name])
            ended = [r for r, w in self.workers.items() if isinstance(w.state, Ended)]
            replayed = {run_id: self._replay_ended(run_id) for run_id in ended}  # before deciding its end
            for run_id, worker in list(self.workers.items()):
                if isinstance(worker.state, Ended):
                    if replayed[run_id] and self._try(run_id, partial(self._ended, worker=worker)):
                        self.unreplayed.pop(run_id, None)
                        del self.workers[run_id]
                    continue
                if worker.kill_at and time.monotonic() > worker.kill_at:
                    self.executors[worker.executor].kill(worker)
                    worker.kill_at = float("inf")  # once
                if str(worker.state) != worker.shown:
                    self._try(run_id, partial(self._follow, worker=worker))
            local = sum(1 for w in self.workers.values() if w.executor == "local")
            free = self.settings.max_concurrent - local
            for run_id, name in self._queued():  # a run whose last worker has not been reaped yet waits for it
                if name in self.executors and self.executors[name].queues_itself:
                    self._try(run_id, self._spawn)
                elif free > 0:
                    free -= 1
                    self._try(run_id, self._spawn)

    def _replay_ended(self, run_id: int) -> bool:
        """Replay an ended worker's journal, so that how it ended is known; True when its end may be decided. A replay
        that fails (a full disk: the database cannot take the rows) is tried again each tick for REPLAY_PATIENCE
        seconds, then the end is decided without it: the journal keeps the lines for a later replay, and a worker's end
        is never left undecided (nor the other runs' ticks stopped)."""
        try:
            if journal.replay(self.sessions, run_id, self.run_dir(run_id)) and self.loop:
                self.loop.call_soon_threadsafe(self.hub.resync, run_id)
            return True
        except Exception as e:
            first = self.unreplayed.setdefault(run_id, time.monotonic())
            full = full_disk(self.run_dir(run_id), str(e))
            if time.monotonic() - first < REPLAY_PATIENCE and not full:
                log.warning("run %s: its ended worker's journal could not be replayed (%s); trying again", run_id, e)
                return False
            log.error("run %s: its ended worker's journal could not be replayed (%s); deciding its end without it",
                      run_id, e)  # fmt: skip
            return True

    def _queued(self) -> list[tuple[int, str]]:
        """(id, executor) of the queued runs this server has no worker for, oldest first."""
        with self.sessions() as s:
            waiting = [*self.workers, *replaying]  # a run whose journal is being replayed starts after it
            query = select(Run.id, Run.executor).where(Run.status == Status.QUEUED, Run.id.not_in(waiting))
            return [(run_id, name or "local") for run_id, name in s.execute(query.order_by(Run.id))]

    def _follow(self, session: Session, run: Run, *, worker: Worker) -> None:
        """A worker still there: the run shows what its executor says of it, and a cluster job that has started makes
        its queued run running (unless its worker said so first)."""
        worker.shown = str(worker.state)
        if run.attempt != worker.attempt or run.job_id != worker.job_id:
            return
        if isinstance(worker.state, Running) and run.status == Status.QUEUED:
            transition(session, run, Status.RUNNING, job_state=str(worker.state))
        elif isinstance(worker.state, (Pending, Running)):
            run.job_state = str(worker.state)

    def cpu_threads(self, run_id: int) -> int | None:
        """The torch threads run_id's worker should train with now, when it trains on the CPU (None on a GPU): its share
        of the cores among the CPU workers running. A worker hears it with each acknowledgement (app/web/live.py)."""
        on_cpu = self._on_cpu()
        return cpu_share(len(on_cpu)) if run_id in on_cpu else None

    def _on_cpu(self) -> list[int]:
        """The runs whose local workers train on the CPU. A copy: the event loop reads it while the tick may change it."""
        return [run_id for run_id, worker in list(self.workers.items()) if worker.executor == "local" and worker.gpu == gpus.ON_CPU]

    def held_gpus(self) -> list[str | None]:
        """The server's GPUs its local workers hold (gpus.UNKNOWN: a re-attached worker's)."""
        return [worker.gpu for worker in list(self.workers.values()) if worker.executor == "local"]

    def _ids(self, *where, limit: int | None = None) -> list[int]:
        with self.sessions() as s:
            return list(s.scalars(select(Run.id).where(*where).order_by(Run.id).limit(limit)))

    def change(self, run_id: int, change: Callable[[Session, Run], None]) -> Run:
        """Apply `change` to one run in its own transaction, then tell its open pages."""
        with self.sessions.begin() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LookupError(f"run {run_id} not found")
            change(s, run)
        self._publish(run)
        return run

    def _try(self, run_id: int, change: Callable[[Session, Run], None]) -> bool:
        """`change` for the tick: a change that fails is logged and leaves the other runs' changes done. True when
        it is done, or the run was deleted meanwhile (nothing left to change)."""
        try:
            self.change(run_id, change)
        except LookupError:
            return True
        except Exception:
            log.exception("run %s: could not update it", run_id)
            return False
        return True

    def _ended(self, session: Session, run: Run, *, worker: Worker) -> None:
        """A worker is gone. Its run, when it is still this worker's and did not report how it ended, ends with the
        executor's reason: cancelled when the server asked it to stop, interrupted when something outside the run
        stopped it (a cluster's time limit, a preemption), else failed with the tail of its log. A run that a time
        limit or a preemption stopped is queued again instead while its `requeue` allows (`_requeue`)."""
        if run.attempt != worker.attempt:
            return  # a newer attempt owns the run
        state: Ended = worker.state
        submitted = run.job_id is not None and run.job_id == worker.job_id  # queued: a cluster job of this attempt
        run.exit_code, run.pid = state.code, None
        if submitted:
            run.job_id = run.job_state = None
        if run.status == Status.CANCELLED and submitted and state.stopped and worker.kill_at is None:
            # The cluster stopped it (scancel, a time limit), with a SIGTERM: the worker saved and said so.
            run.error = state.reason + self._not_requeued(run, state)
            self._requeue(session, run, state)
            return
        if not (run.status == Status.RUNNING or (run.status == Status.QUEUED and submitted)):
            return  # it reported how it ended, or it was resumed since and waits in the queue
        if worker.kill_at is not None:
            transition(session, run, Status.CANCELLED, error=self._lost(session, run, worker))
            return
        tail = log_tail(self.run_dir(run.id) / WORKER_LOG)
        reason = f"{full}; {state.reason}" if (full := full_disk(self.run_dir(run.id), tail)) else state.reason
        if full:
            self.reserve.release()  # so that this can be written
        error = reason + (f":\n{tail}" if tail else "")
        if run.status == Status.QUEUED:  # a cluster job that ended before its worker could say it runs
            transition(session, run, Status.FAILED, error=error)
        elif state.interrupted:
            transition(session, run, Status.INTERRUPTED,
                       error=f"{reason}; Resume continues it from its checkpoint" + self._not_requeued(run, state))
            self._requeue(session, run, state)
        else:
            transition(session, run, Status.FAILED, error=error)

    def _requeue(self, session: Session, run: Run, state: Ended) -> None:
        """Queue an interrupted or cancelled run again by itself, as Resume does (from its resume.pt, as a new job),
        when something a new job gets past ended it (Slurm's time limit, a preemption) and the run asked for it: at
        most its `requeue` times, so that a run that never fits the time limit does not go round forever. Its error
        says why while it waits and trains."""
        limit = (run.slurm or {}).get("requeue", 0)
        if state.requeue_after is None or run.requeued >= limit:
            return
        checkpoint = (self.run_dir(run.id) / CHECKPOINTS_DIR / RESUME).is_file()
        why = f"requeued after {state.requeue_after}, {run.requeued + 1} of {limit}: {state.reason}"
        transition(session, run, Status.QUEUED, resume=checkpoint, requeued=run.requeued + 1, error=why, job_id=None,
                   job_state=None)  # fmt: skip

    @staticmethod
    def _not_requeued(run: Run, state: Ended) -> str:
        """What a run that asked to be requeued and has been as often as it asked adds to its error."""
        limit = (run.slurm or {}).get("requeue", 0)
        done = state.requeue_after and limit and run.requeued >= limit
        return f"; not requeued again, it was {limit} of {limit} times" if done else ""

    def _lost(self, session: Session, run: Run, worker: Worker) -> str:
        """Why a cancelled worker that was killed after its grace saved nothing, and how many steps Resume goes back."""
        saved = session.get(Checkpoint, (run.id, RESUME))
        resume_step = saved.step or 0 if saved is not None else 0
        heard = f"it heard the stop at step {worker.stopped_at} but" if worker.stopped_at is not None else "it"
        return (f"{heard} did not save within the {self.settings.grace_seconds:g} s grace and was killed; Resume "
                f"continues from step {resume_step}: {max(0, run.step - resume_step)} steps lost")

    def server_url(self) -> str:
        """Where workers reach this server: GANBOARD_PUBLIC_URL, else loopback unless bound to one address."""
        if self.settings.public_url:
            return "ws" + self.settings.public_url.rstrip("/").removeprefix("http")
        host = self.settings.host
        if host in ("", "0.0.0.0", "::", "localhost"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        ports = _listening_ports()
        port = self.settings.port
        if ports and port not in ports and len(ports) == 1:
            log.warning("settings say port %s but the server listens on %s: workers use %s", port, ports[0], ports[0])
            port = ports[0]
        return f"ws://{host}:{port}"

    def run_dir(self, run_id: int) -> Path:
        return self.settings.runs_dir / str(run_id)

    def _spawn(self, session: Session, run: Run) -> None:
        """Start the run's next attempt; if its worker cannot be started, the run fails with the reason. A local worker
        makes the run running at once; a cluster's job leaves it queued until the job starts."""
        attempt, token = run.attempt + 1, secrets.token_urlsafe(24)
        if error := check_paths(run.config, self.settings.data_roots):  # a symlink may have moved since the POST
            transition(session, run, Status.FAILED, error=error)
            return
        executor = self.executor(run)
        try:
            worker = self._launch(run, executor, attempt, token)
        except (LaunchError, PlacementError, OSError) as e:
            transition(session, run, Status.FAILED, error=f"its worker could not be started: {e}")
            return
        self.workers[run.id] = worker
        # A new token on every start: a worker's token is good for its own attempt only.
        # A requeued run's error says why, until it ends again (lifecycle.transition).
        fields = dict(attempt=attempt, token=hash_token(token), exit_code=None, device=None, bf16=None,
                      job_id=worker.job_id, job_state=str(worker.state))  # fmt: skip
        worker.shown = str(worker.state)
        if executor.queues_itself:
            for key, value in fields.items():
                setattr(run, key, value)
        else:
            transition(session, run, Status.RUNNING, pid=int(worker.job_id), **fields)

    def _launch(self, run: Run, executor: Executor, attempt: int, token: str) -> Worker:
        run_dir = self.run_dir(run.id)
        (run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG).write_text(json.dumps(run.config, indent=2))
        gpu, device = executor.place(run.config.get("device", "auto"), self.held_gpus(), run.config.get("gpus", 1))
        # The admin token stays with the server; the worker gets its own run's token, in the environment, not in argv
        # where `ps` shows it.
        env = {k: v for k, v in os.environ.items() if k != "GANBOARD_TOKEN"}
        env |= {"PYTHONUNBUFFERED": "1", "GANBOARD_WORKER_TOKEN": token}
        args = [
            "--run-dir", str(run_dir), "--run-id", str(run.id), "--server", self.server_url(), "--attempt", str(attempt),
            "--device", device,
        ]  # fmt: skip
        if run.resume:
            args.append("--resume")
        if executor.queues_itself:  # the job's own CPUs
            args += ["--threads", str((run.slurm or {}).get("cpus", self.settings.slurm_cpus))]
        elif device == "cpu":  # the workers already on the CPU hear their new share with their next acknowledgement
            args += ["--threads", str(cpu_share(1 + len(self._on_cpu())))]
        log_path = run_dir / WORKER_LOG
        with log_path.open("ab") as out:
            where = f"{executor.name}" + (f", CUDA_VISIBLE_DEVICES={gpu}" if gpu is not gpus.UNKNOWN else "")
            out.write(f"--- attempt {attempt}, {utcnow().isoformat()}Z ({where}): trainer.worker {' '.join(args)}\n".encode())
        return executor.launch(Launch(run.id, attempt, run_dir, args, env, log_path, run.config.get("gpus", 1), run.slurm), gpu)

    def _publish(self, run: Run) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.publish, run.id, [{"type": "run", "run": run_json(run)}])
