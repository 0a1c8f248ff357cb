"""The local executor: each worker a subprocess of the server, in its own process group, on one GPU or the CPU."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from app import gpus
from app.runs.executors import Ended, Launch, LaunchError, Running, Worker
from app.runs.exits import describe_exit
from app.storage.db import Run

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]


def is_our_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"trainer.worker" in cmdline and state != "Z"


class LocalExecutor:
    name = "local"
    queues_itself = False

    def place(self, device: str, busy: list[str | None], count: int = 1) -> tuple[str | None, str]:
        return gpus.place(device, busy, count)

    def launch(self, launch: Launch, gpu: str | None) -> Worker:
        cmd = [sys.executable, "-m", "trainer.worker", *launch.args]
        try:
            with launch.log.open("ab") as out:
                popen = subprocess.Popen(cmd, cwd=REPO, env=launch.env | gpus.environment(gpu), stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as e:
            raise LaunchError(str(e)) from e
        log.info("run %s: started worker pid %s (attempt %s)", launch.run_id, popen.pid, launch.attempt)
        return Worker(self.name, str(popen.pid), launch.attempt, gpu, popen, Running(f"pid {popen.pid}"))

    def attach(self, run: Run) -> Worker | None:
        if not (run.pid and is_our_worker(run.pid)):
            return None
        return Worker(self.name, str(run.pid), run.attempt, gpus.ON_CPU if run.device == "cpu" else gpus.UNKNOWN, None, Running(f"pid {run.pid}"))

    def poll(self, workers: list[Worker]) -> None:
        for worker in workers:
            if worker.handle is not None:
                code = worker.handle.poll()
                ended = code is not None
            else:  # re-attached: not our child, its exit code is unknown
                code, ended = None, not is_our_worker(int(worker.job_id))
            if ended:
                worker.state = Ended(code, describe_exit(code) + " before finishing")

    def stop(self, worker: Worker) -> None:
        self._signal(worker, signal.SIGTERM)

    def kill(self, worker: Worker) -> None:
        self._signal(worker, signal.SIGKILL)

    @staticmethod
    def _signal(worker: Worker, sig: int) -> None:
        try:
            os.killpg(int(worker.job_id), sig)
        except ProcessLookupError:
            pass
