"""The Slurm executor: one `sbatch` job per attempt of a run, watched with `squeue` and `scontrol`.

Plain Slurm commands rather than submitit: submitit's job process ignores SIGTERM (the worker's way to save and end
`cancelled`), and without `sacct` (no slurmdbd, as on many small clusters) it reports a cancelled job UNKNOWN and waits
forever. `squeue --states=all` answers for every job of ours in one call, with the state and Slurm's reason, and
`scontrol show job` gives an ended job's exit code; neither needs accounting.

The job runs the same command as a local worker (`exec python -m trainer.worker ...`, so the worker is the batch
step's process and `scancel --batch --signal=TERM` reaches it), with its output appended to the run's worker.log and
its run's token in its environment (sbatch exports the environment it runs with; the admin token is not in it).
Each run has its own resources (`SlurmResources`: partition, time limit, CPUs, memory, GPUs, extra options), the
settings' where it does not say. Jobs are `--no-requeue`: Slurm's own requeue would run the same command again, from
the start and with the old attempt's token; a run that its time limit or a preemption ended is requeued by the
supervisor instead, as a new job from its resume.pt, when the run asks for it (`requeue`).
The runs folder, the repository and its Python must be on a filesystem the nodes share: `check` proves it with a probe
job before the server starts.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.runs.executors import Ended, Launch, LaunchError, Pending, Running, Worker
from app.runs.executors.local import REPO
from app.settings import Settings, sbatch_option, slurm_mem, slurm_time
from app.storage.db import Run

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # squeue at most this often, however often the supervisor ticks
PROBE_SECONDS = 60.0  # how long the shared-folder probe may wait for a node; longer: the server starts unchecked
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "CONFIGURING"}
REQUEUED_AFTER = {"TIMEOUT": "Slurm's time limit", "PREEMPTED": "a preemption"}  # a job worth starting again by itself
INTERRUPTED = {  # outside the run's control: resumable as it is
    "TIMEOUT": "reached its time limit",
    "DEADLINE": "reached its deadline",
    "PREEMPTED": "was preempted",
    "NODE_FAIL": "lost its node",
    "BOOT_FAIL": "could not boot its node",
}
FAILED = {
    "COMPLETED": "ended",
    "FAILED": "failed",
    "CANCELLED": "was cancelled in Slurm (scancel)",
    "OUT_OF_MEMORY": "ran out of memory (raise GANBOARD_SLURM_MEM)",
}


class SlurmResources(BaseModel):
    """A run's own job: `POST /api/runs` takes them as `slurm`, each left out taking the server's setting (`of`)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, pattern=r"^[\w.,-]+$", max_length=100, description="sbatch --partition "
                                  "(null: the cluster's default)")
    time: Annotated[str, AfterValidator(slurm_time)] | None = Field(None, description="sbatch --time, e.g. 4:00:00 "
                                                                    "(null: the partition's)")
    cpus: int = Field(2, ge=1, le=1024, description="sbatch --cpus-per-task, and the run's torch threads")
    mem: Annotated[str, AfterValidator(slurm_mem)] | None = Field(None, description="sbatch --mem, e.g. 16G (null: "
                                                                  "the partition's)")
    gpus: int = Field(0, ge=0, le=64, description="sbatch --gpus (0: the run trains on the CPU)")
    options: list[Annotated[str, AfterValidator(sbatch_option)]] = Field(
        default_factory=list, max_length=32, description='more sbatch options, e.g. ["--qos=normal"]'
    )
    requeue: int = Field(0, ge=0, le=100, description="times the run is requeued by itself from its resume.pt when "
                         "Slurm's time limit or a preemption ends its job (0: never)")

    @classmethod
    def of(cls, settings: Settings) -> "SlurmResources":
        """The server's settings: what a run gets for what it does not say."""
        s = settings
        return cls(partition=s.slurm_partition, time=s.slurm_time, cpus=s.slurm_cpus, mem=s.slurm_mem, gpus=s.slurm_gpus,
                   options=s.slurm_options, requeue=s.slurm_requeue)  # fmt: skip


class SlurmError(RuntimeError):
    """Slurm is not usable as configured; the message says what to change."""


def _run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: {e}")


def exit_code(text: str | None) -> int | None:
    """Slurm's ExitCode `code:signal` as a Popen return code: 3:0 -> 3, 0:15 -> -15."""
    try:
        code, sig = (int(p) for p in (text or "").split(":"))
    except ValueError:
        return None
    return -sig if sig else code


class SlurmExecutor:
    name = "slurm"
    queues_itself = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self.polled_at = 0.0

    def sbatch_options(self) -> list[str]:
        """The probe job's options: the settings' partition, account and extra options (a run's job has its own)."""
        s = self.settings
        chosen = {"--partition": s.slurm_partition, "--account": s.slurm_account}
        return [f"{k}={v}" for k, v in chosen.items() if v] + list(s.slurm_options)

    # -- at start ------------------------------------------------------------------------------------------------------

    def check(self, runs_dir: Path) -> None:
        """Refuse to start where jobs could not work: no Slurm, nodes that cannot reach a loopback server, or a runs
        folder the nodes do not see (a probe job reads a file written here)."""
        info = _run(["sinfo", "-h", "-o", "%n"])
        if info.returncode != 0:
            raise SlurmError(f"GANBOARD_EXECUTOR=slurm, but `sinfo` fails: {info.stderr.strip() or info.returncode}")
        nodes = set(info.stdout.split())
        here = {socket.gethostname(), socket.getfqdn(), "localhost"}
        if self.settings.public_url is None and not nodes <= here:
            raise SlurmError(f"GANBOARD_PUBLIC_URL is not set, and the cluster's nodes ({', '.join(sorted(nodes))}) are "
                             "not this machine: set it to this server's address as the nodes reach it")  # fmt: skip
        self._probe(runs_dir)

    def _probe(self, runs_dir: Path) -> None:
        secret = secrets.token_hex(8)
        probe = runs_dir / f".slurm-probe-{secret}"
        seen = probe.with_suffix(".seen")
        probe.write_text(secret)
        try:
            cmd = ["sbatch", "--parsable", "--job-name=ganboard-probe", "--output=/dev/null", "--time=1", "--ntasks=1",
                   *self.sbatch_options(), "--wrap", f"cat {shlex.quote(str(probe))} > {shlex.quote(str(seen))}"]  # fmt: skip
            out = _run(cmd)
            if out.returncode != 0:
                raise SlurmError(f"a probe job could not be submitted: {out.stderr.strip()}")
            job = out.stdout.strip().split(";")[0]
            deadline = time.monotonic() + PROBE_SECONDS
            while _run(["squeue", "-h", "-j", job, "-o", "%T"]).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.2)
            if time.monotonic() >= deadline:
                _run(["scancel", job])
                log.warning("the shared-folder probe (Slurm job %s) did not run within %.0f s; starting unchecked: the "
                            "runs folder %s must be on a filesystem the nodes share", job, PROBE_SECONDS, runs_dir)  # fmt: skip
                return
            if not (seen.is_file() and seen.read_text() == secret):
                raise SlurmError(f"the runs folder {runs_dir} is not shared with the Slurm nodes: a probe job (Slurm job "
                                 f"{job}) could not read {probe.name} there. Put GANBOARD_RUNS_DIR on a filesystem every "
                                 "node mounts at the same path (docs/cluster.md)")  # fmt: skip
            log.info("the Slurm nodes see the runs folder %s (probe job %s)", runs_dir, job)
        finally:
            probe.unlink(missing_ok=True)
            seen.unlink(missing_ok=True)

    # -- the interface -------------------------------------------------------------------------------------------------

    def place(self, device: str, busy: list[str | None], count: int = 1) -> tuple[str | None, str]:
        """Slurm gives a job its GPUs (and their CUDA_VISIBLE_DEVICES); a worker uses the first, a run's ranks one
        each (`Launch.gpus` asks for them)."""
        return None, "cuda:0" if device.startswith("cuda") else device

    def launch(self, launch: Launch, gpu: str | None) -> Worker:
        asked = self.resources(launch.resources)
        # A run on N GPUs (its `gpus`) asks for N on one node, where torchrun starts its ranks; CPU clusters ask none.
        gpus = max(asked.gpus, launch.gpus) if asked.gpus else None
        chosen = {"--partition": asked.partition, "--account": self.settings.slurm_account, "--time": asked.time,
                  "--mem": asked.mem, "--gpus": gpus}  # fmt: skip
        cmd = [
            "sbatch", "--parsable", f"--job-name=ganboard-{launch.run_id}", f"--output={launch.log}", "--open-mode=append",
            f"--chdir={REPO}", "--ntasks=1", f"--cpus-per-task={asked.cpus}", "--export=ALL", "--no-requeue",
            *(f"{k}={v}" for k, v in chosen.items() if v), *asked.options,
            "--wrap", shlex.join(["exec", sys.executable, "-m", "trainer.worker", *launch.args]),
        ]  # fmt: skip
        out = _run(cmd, env=launch.env)  # the job's environment: the run's token travels here, not in argv
        if out.returncode != 0:
            raise LaunchError(out.stderr.strip() or f"sbatch exited with code {out.returncode}")
        job = out.stdout.strip().split(";")[0]
        log.info("run %s: submitted Slurm job %s (attempt %s)", launch.run_id, job, launch.attempt)
        self.polled_at = 0.0
        return Worker(self.name, job, launch.attempt, state=Pending("submitted"))

    def resources(self, stored: dict | None) -> SlurmResources:
        """A run's job as it was asked for; a run from before per-run resources gets the settings'."""
        return SlurmResources.model_validate(stored) if stored is not None else SlurmResources.of(self.settings)

    def attach(self, run: Run) -> Worker | None:
        """A job is re-attached by its id whatever its state: the next poll says whether it is still there."""
        if not run.job_id:
            return None
        return Worker(self.name, run.job_id, run.attempt, state=Pending("re-attached"))

    def poll(self, workers: list[Worker]) -> None:
        if not workers or time.monotonic() - self.polled_at < POLL_SECONDS:
            return
        jobs = {w.job_id: w for w in workers}
        out = _run(["squeue", "-h", "--states=all", "-j", ",".join(jobs), "-o", "%i|%T|%r|%N"])
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            log.warning("squeue failed, the Slurm jobs keep their last known state: %s", out.stderr.strip())
            return
        self.polled_at = time.monotonic()
        seen = {}
        for line in out.stdout.splitlines():
            job, state, reason, nodes = (line.split("|") + ["", "", ""])[:4]
            seen[job] = (state.split()[0] if state else "", reason, nodes)
        for job, worker in jobs.items():
            if job not in seen:
                worker.state = Ended(None, f"Slurm no longer knows job {job}: it ended unwatched", interrupted=True)
                continue
            state, reason, nodes = seen[job]
            if state in PENDING:
                worker.state = Pending("configuring its node" if state == "CONFIGURING" else reason or state.lower())
            elif state in INTERRUPTED or state in FAILED:
                worker.state = self._ended(job, state, reason)
            else:  # RUNNING, COMPLETING, SUSPENDED, ...
                where = f"Slurm job {job} on {nodes}" + ("" if state in ("RUNNING", "COMPLETING") else f", {state.lower()}")
                worker.state = Running(where)

    def _ended(self, job: str, state: str, reason: str) -> Ended:
        shown = _run(["scontrol", "-o", "show", "job", job]).stdout.split()
        fields = dict(part.split("=", 1) for part in shown if "=" in part)
        code = exit_code(fields.get("ExitCode"))
        what = INTERRUPTED.get(state) or FAILED.get(state, state.lower())
        because = f", reason {reason}" if reason and reason != "None" else ""
        text = f"Slurm job {job} {what} (state {state}{because}, exit code {fields.get('ExitCode', 'unknown')})"
        return Ended(code, text, interrupted=state in INTERRUPTED, stopped=state not in ("COMPLETED", "FAILED"),
                     requeue_after=REQUEUED_AFTER.get(state))

    def stop(self, worker: Worker) -> None:
        """SIGTERM to the batch step, which is the worker itself (`exec` in the job's script); a pending job is simply
        removed from the queue."""
        if isinstance(worker.state, Pending):
            self.kill(worker)
            return
        _run(["scancel", "--batch", "--signal=TERM", worker.job_id])
        self.polled_at = 0.0

    def kill(self, worker: Worker) -> None:
        """A pending job is removed from the queue. A running one gets SIGKILL in its batch step, the worker: a plain
        `scancel` (with or without --signal=KILL) would send SIGTERM first and wait KillWait."""
        _run(["scancel", worker.job_id] if isinstance(worker.state, Pending) else ["scancel", "--batch", "--signal=KILL", worker.job_id])
        self.polled_at = 0.0
