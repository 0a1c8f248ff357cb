"""The supervisor: a queue of runs and at most `max_concurrent` worker processes.

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
import time
from collections import deque
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from app import journal
from app.db import Run, hash_token, utcnow
from app.dbfile import DatabaseFile
from app.hub import Hub
from app.settings import Settings, visible_gpus
from app.store import run_json

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
TICK_SECONDS = 0.5


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


class Worker:
    """A worker process: one we started (a Popen), or one a previous server started (a bare pid)."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None, gpu: str | None = None):
        self.pid, self.popen, self.gpu = pid, popen, gpu
        self.kill_at: float | None = None

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
        self.workers: dict[int, Worker] = {}
        self.dbfile = DatabaseFile(settings.database_url, sessions, settings.runs_dir)
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await run_in_threadpool(self.reconcile)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop supervising; the workers keep training and reconnect to the next server."""
        if self.task:
            self.task.cancel()

    def poke(self) -> None:
        self.wakeup.set()

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
        with self.sessions.begin() as s:
            for run in s.scalars(select(Run).where(Run.status == "running")):
                if run.pid and _is_our_worker(run.pid):
                    self.workers[run.id] = Worker(run.pid)
                    log.info("run %s: re-attached worker pid %s", run.id, run.pid)
                else:
                    run.status, run.finished_at, run.pid = "interrupted", utcnow(), None
                    run.error = "the server stopped while this run trained, and its worker is gone; Resume continues it"

    # -- the queue ---------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        self.dbfile.check()
        for run_id in [r for r, w in self.workers.items() if w.exit_code() is not False]:  # before deciding its end
            journal.replay(self.sessions, run_id, self.run_dir(run_id)) and self._publish(run_id, journal.RESYNC)
        changed: list[Run] = []
        with self.sessions.begin() as s:
            for run_id, worker in list(self.workers.items()):
                code = worker.exit_code()
                if code is False:
                    if worker.kill_at and time.monotonic() > worker.kill_at:
                        worker.signal(signal.SIGKILL)
                    continue
                del self.workers[run_id]
                run = s.get(Run, run_id)
                if run is not None:
                    self._ended(run, code, cancelling=worker.kill_at is not None)
                    changed.append(run)
            free = self.settings.max_concurrent - len(self.workers)
            if free > 0:
                queued = s.scalars(select(Run).where(Run.status == "queued").order_by(Run.id).limit(free)).all()
                for run in queued:
                    self._spawn(run)
                    changed.append(run)
            messages = [(run.id, run_json(run)) for run in changed]
        for run_id, data in messages:
            self._publish(run_id, [{"type": "run", "run": data}])

    def _ended(self, run: Run, code: int | None, cancelling: bool) -> None:
        run.exit_code, run.pid = code, None
        if run.status in ("queued", "running"):  # it died without reporting how it ended
            run.finished_at = utcnow()
            if cancelling:
                run.status = "cancelled"
            else:
                run.status = "failed"
                tail = log_tail(self.run_dir(run.id) / "worker.log")
                how = f"exited with code {code}" if code is not None else "(re-attached after a server restart) is gone"
                run.error = f"the worker {how} before finishing" + (f":\n{tail}" if tail else "")

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

    def _spawn(self, run: Run) -> None:
        run_dir = self.run_dir(run.id)
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(run.config, indent=2))
        run.attempt += 1
        token = secrets.token_urlsafe(24)
        run.token = hash_token(token)  # a new one on every start: a worker's token is good for its own attempt only
        gpu, device = self._device(run.config.get("device", "auto"))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        cmd = [
            sys.executable, "-m", "trainer.worker", "--run-dir", str(run_dir), "--run-id", str(run.id),
            "--server", self.server_url(), "--attempt", str(run.attempt), "--device", device,
        ]  # fmt: skip
        if run.resume:
            cmd.append("--resume")
        env["GANBOARD_WORKER_TOKEN"] = token  # not on the command line, where `ps` would show it
        with (run_dir / "worker.log").open("ab") as out:
            out.write(f"--- attempt {run.attempt}, {utcnow().isoformat()}Z: {' '.join(cmd[1:])}\n".encode())
            out.flush()
            popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[run.id] = Worker(popen.pid, popen, gpu)
        run.pid, run.exit_code, run.status, run.error = popen.pid, None, "running", None
        run.started_at = run.started_at or utcnow()
        run.finished_at = None
        log.info("run %s: started worker pid %s (attempt %s, %s)", run.id, popen.pid, run.attempt, device)

    def cancel(self, run: Run) -> None:
        """Queued: cancelled at once. Running: SIGTERM (the worker saves a checkpoint), SIGKILL after the grace."""
        worker = self.workers.get(run.id)
        if run.status == "queued" or worker is None:
            run.status, run.finished_at = "cancelled", utcnow()
            return
        worker.signal(signal.SIGTERM)
        worker.kill_at = time.monotonic() + self.settings.grace_seconds

    def _publish(self, run_id: int, messages: list[dict]) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.hub.publish, run_id, messages)
