"""The supervisor: a queue of runs, at most `max_concurrent` worker processes, and the one owner of a run's status.

A run's status changes only through `transition`, along `trainer.protocol.TRANSITIONS`, each change in its own
transaction and only if the run still has the status and attempt it was read with. Every start of a run is a new
attempt; a message or a process exit from an older attempt never changes a newer one. The tick and the API's actions
(submit, cancel, resume) take turns on one lock, so a run is never started and cancelled at once.

Each worker is `python -m trainer.worker` in its own process group, with CUDA_VISIBLE_DEVICES set to its GPU and its
output appended to runs/<id>/worker.log. Workers outlive a server restart: at start-up a run left `running` is
re-attached when its worker is still alive (it reconnects on its own) and marked `interrupted` when it is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from starlette.concurrency import run_in_threadpool

from app import journal
from app.db import Checkpoint, Run, hash_token, utcnow
from app.dbfile import DatabaseFile
from app.exits import describe_exit
from app.paths import check_paths
from app.runfiles import claim
from app.hub import Hub
from app.settings import Settings, visible_gpus
from app.store import run_json
from trainer.protocol import ACTIVE, CHECKPOINTS_DIR, CONFIG, ENDED, RESUMABLE, RESUME, SAMPLES_DIR, WORKER_LOG, Status
from trainer.protocol import can_move

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
TICK_SECONDS = 0.5


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


def _is_our_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"trainer.worker" in cmdline and state != "Z"


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


class TransitionError(Exception):
    """A status change the lifecycle does not allow, or one that another change got to first (the API's 409)."""


def transition(session: Session, run: Run, new: Status, **fields) -> None:
    """Move `run` to `new`, with `fields` and the times that go with the move, in the caller's transaction.

    The one place a run's status is written. The UPDATE applies only while the row still has the status and attempt
    this session read: another thread (a worker's message, the tick, a request) may have moved it meanwhile, and then
    this raises instead of overwriting the newer state.
    """
    old = Status(run.status)
    if not can_move(old, new):
        raise TransitionError(f"run {run.id} is {old}: it cannot become {new}")
    now = utcnow()
    if new == Status.RUNNING:
        fields.update(running_since=now, started_at=run.started_at or now, finished_at=None, images_per_s=None,
                      attempt_images_per_s=None)
    elif old == Status.RUNNING:
        ran = (now - run.running_since).total_seconds() if run.running_since else 0.0
        fields.update(running_since=None, ran_seconds=run.ran_seconds + ran, images_per_s=None, scoring=None)
    if new in ENDED:
        fields["finished_at"] = now
    elif new == Status.QUEUED:
        fields["finished_at"] = None
    fields["status"] = new
    session.flush()
    done = session.execute(
        update(Run).where(Run.id == run.id, Run.status == old, Run.attempt == run.attempt).values(**fields),
        execution_options={"synchronize_session": False},
    )
    if done.rowcount != 1:
        raise TransitionError(f"run {run.id} changed while it was to become {new}; reload it")
    for key, value in fields.items():
        set_committed_value(run, key, value)
    log.info("run %s: %s -> %s (attempt %s)", run.id, old, new, run.attempt)


def _changed(run: Run, changes: dict) -> dict:
    """The fields that put `changes` into the run's config and record them in its `changes`; none when nothing changes."""
    changed = {k: [run.config.get(k), v] for k, v in changes.items() if run.config.get(k) != v}
    if not changed:
        return {}
    record = {"at": utcnow().isoformat() + "Z", "step": run.step, "epoch": run.epoch, "changed": changed}
    return {"config": {**run.config, **changes}, "changes": [*(run.changes or []), record]}


class Worker:
    """A worker process for one attempt of a run: one we started (a Popen), or one a previous server started (a pid)."""

    def __init__(self, pid: int, attempt: int, popen: subprocess.Popen | None = None, gpu: str | None = None):
        self.pid, self.attempt, self.popen, self.gpu = pid, attempt, popen, gpu
        self.kill_at: float | None = None  # cancelled: SIGKILL after this (time.monotonic())
        self.stopped_at: int | None = None  # the step at which it said it heard the stop

    def exit_code(self) -> int | None | bool:
        """The exit code once it has ended (None when unknown), False while it runs."""
        if self.popen is not None:
            code = self.popen.poll()
            return False if code is None else code
        return False if _is_our_worker(self.pid) else None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


class Supervisor:
    def __init__(self, settings: Settings, sessions: sessionmaker, hub: Hub):
        self.settings, self.sessions, self.hub = settings, sessions, hub
        self.workers: dict[int, Worker] = {}  # by run id; at most one per run, reaped before the run starts again
        self.lock = threading.Lock()  # the tick and the API's actions take turns
        self.dbfile = DatabaseFile(settings.database_url, sessions, settings.runs_dir)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- running the supervisor ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await run_in_threadpool(self.reconcile)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop supervising; the workers keep training and reconnect to the next server."""
        if self.task:
            self.task.cancel()

    def poke(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wakeup.set)

    async def _run(self) -> None:
        while True:
            try:
                await run_in_threadpool(self.tick)
            except Exception:
                log.exception("supervisor tick failed")
            try:
                await asyncio.wait_for(self.wakeup.wait(), TICK_SECONDS)
            except TimeoutError:
                pass
            self.wakeup.clear()

    def reconcile(self) -> None:
        """At start-up: re-attach the workers of runs left running, or mark those runs interrupted."""
        with self.lock:
            for run_id in self._ids(Run.status == Status.RUNNING):
                self._try(run_id, self._reattach)

    def _reattach(self, session: Session, run: Run) -> None:
        if run.pid and _is_our_worker(run.pid):
            self.workers[run.id] = Worker(run.pid, run.attempt, gpu="" if run.device == "cpu" else None)
            log.info("run %s: re-attached worker pid %s", run.id, run.pid)
        else:
            error = "the server stopped while this run trained, and its worker is gone; Resume continues it"
            transition(session, run, Status.INTERRUPTED, pid=None, error=error)

    # -- the API's actions ---------------------------------------------------------------------------------------------

    def submit(self, session: Session, run: Run) -> None:
        """Commit a new run (a run is born queued), in a folder of its own, and wake the queue."""
        claim(self.run_dir(run.id))
        session.commit()
        self._publish(run)
        self.poke()

    def cancel(self, run_id: int) -> Run:
        """Queued: cancelled at once. Running: SIGTERM (the worker saves a checkpoint and reports `cancelled`), SIGKILL
        after the grace; if it ends without reporting, its exit makes the run `cancelled`."""

        def cancel(session: Session, run: Run) -> None:
            if run.status not in ACTIVE:
                raise TransitionError(f"run {run.id} is {run.status}: only a queued or running run can be cancelled")
            worker = self.workers.get(run.id)
            if run.status == Status.QUEUED or worker is None or worker.attempt != run.attempt:
                transition(session, run, Status.CANCELLED)
            elif worker.kill_at is None:
                worker.signal(signal.SIGTERM)
                worker.kill_at = time.monotonic() + self.settings.grace_seconds

        with self.lock:
            return self._change(run_id, cancel)

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
            transition(session, run, Status.QUEUED, resume=checkpoint, error=None, **_changed(run, changes or {}))

        with self.lock:
            run = self._change(run_id, resume)
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
            transition(session, run, Status.QUEUED, resume=True, error=None, **_changed(run, more))

        with self.lock:
            run = self._change(run_id, extend)
        self.poke()
        return run

    # -- the queue -----------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Reap the workers that ended, then start queued runs in the free slots; each run in its own transaction."""
        with self.lock:
            self.dbfile.check()
            for run_id in [r for r, w in self.workers.items() if w.exit_code() is not False]:  # before deciding its end
                if journal.replay(self.sessions, run_id, self.run_dir(run_id)) and self.loop:
                    self.loop.call_soon_threadsafe(self.hub.resync, run_id)
            for run_id, worker in list(self.workers.items()):
                code = worker.exit_code()
                if code is False:
                    if worker.kill_at and time.monotonic() > worker.kill_at:
                        worker.signal(signal.SIGKILL)
                elif self._try(run_id, partial(self._ended, worker=worker, code=code)):
                    del self.workers[run_id]
            free = self.settings.max_concurrent - len(self.workers)
            if free > 0:  # a run whose last worker has not been reaped yet waits for it
                for run_id in self._ids(Run.status == Status.QUEUED, Run.id.not_in(list(self.workers)), limit=free):
                    self._try(run_id, self._spawn)

    def cpu_threads(self, run_id: int) -> int | None:
        """The torch threads run_id's worker should train with now, when it trains on the CPU (None on a GPU): its share
        of the cores among the CPU workers running. A worker hears it with each acknowledgement (app/live.py)."""
        on_cpu = self._on_cpu()
        return cpu_share(len(on_cpu)) if run_id in on_cpu else None

    def _on_cpu(self) -> list[int]:
        """The runs whose workers train on the CPU. A copy: the event loop reads it while the tick may change it."""
        return [run_id for run_id, worker in list(self.workers.items()) if worker.gpu == ""]

    def _ids(self, *where, limit: int | None = None) -> list[int]:
        with self.sessions() as s:
            return list(s.scalars(select(Run.id).where(*where).order_by(Run.id).limit(limit)))

    def _change(self, run_id: int, change: Callable[[Session, Run], None]) -> Run:
        """Apply `change` to one run in its own transaction, then tell its open pages."""
        with self.sessions.begin() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise LookupError(f"run {run_id} not found")
            change(s, run)
        self._publish(run)
        return run

    def _try(self, run_id: int, change: Callable[[Session, Run], None]) -> bool:
        """`_change` for the tick: a change that fails is logged and leaves the other runs' changes done. True when
        it is done, or the run was deleted meanwhile (nothing left to change)."""
        try:
            self._change(run_id, change)
        except LookupError:
            return True
        except Exception:
            log.exception("run %s: could not update it", run_id)
            return False
        return True

    def _ended(self, session: Session, run: Run, *, worker: Worker, code: int | None) -> None:
        if run.attempt != worker.attempt:
            return  # a newer attempt owns the run
        run.exit_code, run.pid = code, None
        if run.status != Status.RUNNING:
            return  # it reported how it ended, or it was resumed since and waits in the queue
        if worker.kill_at is not None:
            transition(session, run, Status.CANCELLED, error=self._lost(session, run, worker))
            return
        tail = log_tail(self.run_dir(run.id) / WORKER_LOG)
        error = describe_exit(code) + " before finishing" + (f":\n{tail}" if tail else "")
        transition(session, run, Status.FAILED, error=error)

    def _lost(self, session: Session, run: Run, worker: Worker) -> str:
        """Why a cancelled worker that was killed after its grace saved nothing, and how many steps Resume goes back."""
        saved = session.get(Checkpoint, (run.id, RESUME))
        resume_step = saved.step or 0 if saved is not None else 0
        heard = f"it heard the stop at step {worker.stopped_at} but" if worker.stopped_at is not None else "it"
        return (f"{heard} did not save within the {self.settings.grace_seconds:g} s grace and was killed; Resume "
                f"continues from step {resume_step}: {max(0, run.step - resume_step)} steps lost")

    def server_url(self) -> str:
        """Where workers reach this server: loopback unless bound to one particular address."""
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

    def _device(self, device: str) -> tuple[str | None, str]:
        """(GPU index for CUDA_VISIBLE_DEVICES or None, the device the worker should use)."""
        gpus = visible_gpus()
        if device == "cpu" or (device == "auto" and not gpus):
            return "", "cpu"
        if not gpus:  # CUDA asked for and none visible: let the worker fail with the reason
            return None, device
        busy = {w.gpu for w in self.workers.values()}
        if device.startswith("cuda:"):
            return device.split(":")[1], "cuda:0"
        return next((g for g in gpus if g not in busy), gpus[0]), "cuda:0"

    def _spawn(self, session: Session, run: Run) -> None:
        """Start the run's next attempt; if its worker cannot be started, the run fails with the reason."""
        attempt, token = run.attempt + 1, secrets.token_urlsafe(24)
        if error := check_paths(run.config, self.settings.data_roots):  # a symlink may have moved since the POST
            transition(session, run, Status.FAILED, error=error)
            return
        try:
            worker = self._launch(run, attempt, token)
        except OSError as e:
            transition(session, run, Status.FAILED, error=f"its worker could not be started: {e}")
            return
        self.workers[run.id] = worker
        # A new token on every start: a worker's token is good for its own attempt only.
        fields = dict(attempt=attempt, token=hash_token(token), pid=worker.pid, exit_code=None, error=None, device=None)
        transition(session, run, Status.RUNNING, bf16=None, **fields)

    def _launch(self, run: Run, attempt: int, token: str) -> Worker:
        run_dir = self.run_dir(run.id)
        (run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG).write_text(json.dumps(run.config, indent=2))
        gpu, device = self._device(run.config.get("device", "auto"))
        # The admin token stays with the server; the worker gets its own run's token, in the environment, not in argv
        # where `ps` shows it.
        env = {k: v for k, v in os.environ.items() if k != "GANBOARD_TOKEN"}
        env |= {"PYTHONUNBUFFERED": "1", "GANBOARD_WORKER_TOKEN": token}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        cmd = [
            sys.executable, "-m", "trainer.worker", "--run-dir", str(run_dir), "--run-id", str(run.id),
            "--server", self.server_url(), "--attempt", str(attempt), "--device", device,
        ]  # fmt: skip
        if run.resume:
            cmd.append("--resume")
        if device == "cpu":  # the workers already on the CPU hear their new share with their next acknowledgement
            cmd += ["--threads", str(cpu_share(1 + len(self._on_cpu())))]
        with (run_dir / WORKER_LOG).open("ab") as out:
            out.write(f"--- attempt {attempt}, {utcnow().isoformat()}Z: {' '.join(cmd[1:])}\n".encode())
            out.flush()
            popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("run %s: started worker pid %s (attempt %s, %s)", run.id, popen.pid, attempt, device)
        return Worker(popen.pid, attempt, popen, gpu)

    def _publish(self, run: Run) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.publish, run.id, [{"type": "run", "run": run_json(run)}])
