"""A run's own Slurm job in `POST /api/runs` (`slurm`: partition, time, cpus, mem, gpus, options, requeue): malformed
values are a 422 naming the field, on any server; a server without Slurm refuses them, and its form has none. What the
executor makes of them with a real Slurm is in tests/test_slurm.py."""

from __future__ import annotations

import pytest

from tests.harness import TINY


@pytest.mark.parametrize(
    ("slurm", "loc", "says"),
    [
        ({"time": "1h"}, ["body", "slurm", "time"], "'1h' is not a Slurm time limit"),
        ({"time": "1-25:00:00:00"}, ["body", "slurm", "time"], "is not a Slurm time limit"),
        ({"mem": "16GB"}, ["body", "slurm", "mem"], "'16GB' is not a Slurm memory size"),
        ({"mem": "0"}, ["body", "slurm", "mem"], "is not a Slurm memory size"),
        ({"options": ["--output=/tmp/elsewhere"]}, ["body", "slurm", "options", 0], "--output is set by GANboard"),
        ({"options": ["qos=normal"]}, ["body", "slurm", "options", 0], "is not an sbatch long option"),
        ({"cpus": 0}, ["body", "slurm", "cpus"], "greater than or equal to 1"),
        ({"requeue": -1}, ["body", "slurm", "requeue"], "greater than or equal to 0"),
        ({"partition": "gpu; rm -rf"}, ["body", "slurm", "partition"], "should match pattern"),
        ({"walltime": "1:00:00"}, ["body", "slurm", "walltime"], "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_slurm_resource_is_a_422_naming_it(server, slurm, loc, says):
    r = server.client.post("/api/runs", json={"config": TINY, "executor": "slurm", "slurm": slurm})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == loc and says in error["msg"], error


def test_a_server_without_slurm_refuses_a_job_and_offers_none(server):
    r = server.client.post("/api/runs", json={"config": TINY, "slurm": {"time": "10"}})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "slurm"] and "for a run on the slurm executor" in error["msg"]
    assert "slurm" not in server.client.get("/api/form").json()
    run = server.client.post("/api/runs", json={"config": {**TINY, "max_steps": 1}}).json()
    assert run["slurm"] is None and run["requeued"] == 0


def test_a_job_its_time_limit_killed_without_a_report_is_requeued_then_left_interrupted(tmp_path):
    """The path tests/test_slurm.py cannot make Slurm take on demand: the worker did not answer Slurm's SIGTERM within
    KillWait, so the run is still running when its TIMEOUT job is reaped. It becomes interrupted, then queued again
    from resume.pt while its `requeue` allows; after that, interrupted with the count in its error."""
    from functools import partial

    from app.storage.db import Run, make_engine, make_sessionmaker
    from app.runs.executors import Ended, Worker
    from app.runs.hub import Hub
    from app.settings import Settings
    from app.runs.supervisor import Supervisor

    runs = tmp_path / "runs"
    (runs / "1" / "checkpoints").mkdir(parents=True)
    (runs / "1" / "checkpoints" / "resume.pt").write_bytes(b"saved")
    settings = Settings(runs_dir=runs)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    supervisor = Supervisor(settings, sessions, Hub())
    with sessions.begin() as s:
        s.add(Run(id=1, name="r", config=TINY, status="running", attempt=1, executor="slurm", job_id="7",
                  slurm={"requeue": 1}))  # fmt: skip

    def timed_out(attempt: int, job: str) -> None:
        state = Ended(-9, f"Slurm job {job} reached its time limit (state TIMEOUT, reason TimeLimit, exit code 0:9)",
                      interrupted=True, stopped=True, requeue_after="Slurm's time limit")  # fmt: skip
        assert supervisor._try(1, partial(supervisor._ended, worker=Worker("slurm", job, attempt, state=state)))

    timed_out(1, "7")
    with sessions() as s:
        run = s.get(Run, 1)
        assert (run.status, run.requeued, run.resume, run.job_id) == ("queued", 1, True, None)
        assert run.error.startswith("requeued after Slurm's time limit, 1 of 1: Slurm job 7 reached its time limit")
    with sessions.begin() as s:  # its second job ran, and the limit stopped it again
        s.get(Run, 1).status, s.get(Run, 1).attempt, s.get(Run, 1).job_id = "running", 2, "8"
    timed_out(2, "8")
    with sessions() as s:
        run = s.get(Run, 1)
        assert (run.status, run.requeued, run.resumable) == ("interrupted", 1, True)
        assert run.error.startswith("Slurm job 8 reached its time limit") and "not requeued again, it was 1 of 1 times" in run.error
