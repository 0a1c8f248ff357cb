"""Runs as Slurm jobs, through the real server and the real Slurm that `scripts/services.sh up` starts (CI does):
skipped, with the reason, where no Slurm answers. Each job runs the real worker on the one node, which is this
machine, so the runs folder is shared and loopback reaches the server."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from tests.harness import REPO, TINY, Server, free_port, start_server, wait_for


def slurm_missing() -> str | None:
    if not shutil.which("sinfo"):
        return "no Slurm here: `sinfo` is not on PATH (eval \"$(scripts/services.sh env)\" after `scripts/services.sh up`)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return f"no Slurm here: sinfo fails ({out.stderr.strip()})"
    return None


pytestmark = pytest.mark.skipif(bool(reason := slurm_missing()), reason=reason or "")


def slurm_server(runs, port: int | None = None, **env: str) -> Server:
    return start_server(runs, port, GANBOARD_EXECUTOR="slurm", GANBOARD_SLURM_CPUS="1", GANBOARD_MAX_CONCURRENT="1", **env)


def cancel_jobs(runs) -> None:
    """What the tests submitted, gone: the Slurm jobs of the runs in this runs dir."""
    with sqlite3.connect(runs / "ganboard.db") as conn:
        jobs = [job for (job,) in conn.execute("SELECT job_id FROM runs WHERE executor = 'slurm' AND job_id IS NOT NULL")]
    if jobs:
        subprocess.run(["scancel", "--signal=KILL", *jobs], capture_output=True)
        subprocess.run(["scancel", *jobs], capture_output=True)


@pytest.fixture
def cluster(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = slurm_server(runs)
    yield server
    server.stop()
    cancel_jobs(runs)


def all_steps(server: Server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()["step"]


def test_a_run_trains_as_a_slurm_job_to_the_end(cluster):
    run = cluster.create(epochs=2)
    assert run["executor"] == "slurm" and run["status"] == "queued"
    wait_for(lambda: cluster.run(run["id"])["job_id"], what="its job")
    assert cluster.client.get("/api/form").json()["executors"] == ["slurm", "local"]
    done = cluster.wait_status(run["id"], "completed", "failed", "interrupted")
    assert done["status"] == "completed", done["error"]
    reaped = wait_for(lambda: (r := cluster.run(run["id"]))["job_id"] is None and r, what="its job reaped")
    assert reaped["job_state"] is None and reaped["exit_code"] == 0
    assert all_steps(cluster, run["id"]) == list(range(1, done["total_steps"] + 1))  # every step once
    assert [s["epoch"] for s in cluster.client.get(f"/api/runs/{run['id']}/samples").json()] == [1, 2]
    names = {c["name"] for c in cluster.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert {"netg.pth", "netd.pth", "resume.pt"} <= names
    log = (cluster.runs_dir / str(run["id"]) / "worker.log").read_text()
    assert "(slurm)" in log and "--threads 1" in log  # the job's output is the run's log


def test_cancel_saves_a_checkpoint_and_resume_continues_as_a_new_job(cluster):
    run_id = cluster.create(epochs=1000)["id"]
    first = wait_for(lambda: (r := cluster.run(run_id))["status"] == "running" and r["step"] > 3 and r, what="training")
    assert first["job_state"].startswith(f"running: Slurm job {first['job_id']} on ")
    cluster.client.post(f"/api/runs/{run_id}/cancel")
    cluster.wait_status(run_id, "cancelled")
    cancelled = wait_for(lambda: (r := cluster.run(run_id))["job_id"] is None and r, what="its job reaped")
    assert cancelled["exit_code"] == 0 and cancelled["error"] is None  # the worker saved and said so, not killed
    names = {c["name"] for c in cluster.client.get(f"/api/runs/{run_id}/checkpoints").json()}
    assert "resume.pt" in names

    assert cluster.client.post(f"/api/runs/{run_id}/resume").status_code == 200
    resumed = wait_for(lambda: (r := cluster.run(run_id))["status"] == "running" and r["total_steps"] and r, what="resumed")
    assert resumed["attempt"] == 2 and resumed["job_id"] != first["job_id"]
    wait_for(lambda: cluster.run(run_id)["step"] > cancelled["step"] + 5, what="steps after the resume")
    cluster.client.post(f"/api/runs/{run_id}/cancel")
    cluster.wait_status(run_id, "cancelled")
    steps = all_steps(cluster, run_id)
    assert steps == list(range(1, len(steps) + 1))  # once each up to the checkpoint, and on after it


def test_a_job_killed_in_slurm_fails_the_run_with_slurms_reason(cluster):
    """`scancel --batch --signal=KILL`: SIGKILL to the worker, nothing saved, no status reported."""
    run_id = cluster.create(epochs=1000)["id"]
    job = wait_for(lambda: (r := cluster.run(run_id))["status"] == "running" and r["step"] > 0 and r["job_id"], what="training")
    subprocess.run(["scancel", "--batch", "--signal=KILL", job], check=True)
    failed = cluster.wait_status(run_id, "failed", "interrupted", "cancelled", timeout=60)
    assert failed["status"] == "failed"
    assert f"Slurm job {job} failed (state FAILED" in failed["error"] and "exit code 0:9" in failed["error"]
    assert failed["resumable"] and failed["exit_code"] == -9


def test_a_job_cancelled_in_slurm_saves_and_says_slurm_cancelled_it(cluster):
    """A plain `scancel` (or `scancel --signal=KILL`, which Slurm turns into a cancel: SIGTERM, then SIGKILL after
    KillWait): the worker saves its checkpoint and reports cancelled; the run names who stopped it."""
    run_id = cluster.create(epochs=1000)["id"]
    job = wait_for(lambda: (r := cluster.run(run_id))["status"] == "running" and r["step"] > 0 and r["job_id"], what="training")
    subprocess.run(["scancel", "--signal=KILL", job], check=True)
    cluster.wait_status(run_id, "cancelled", "failed", timeout=60)
    done = wait_for(lambda: (r := cluster.run(run_id))["job_id"] is None and r, what="its job reaped")
    assert done["status"] == "cancelled" and f"Slurm job {job} was cancelled in Slurm" in done["error"]
    assert "resume.pt" in {c["name"] for c in cluster.client.get(f"/api/runs/{run_id}/checkpoints").json()}


def test_a_server_restart_re_attaches_the_job_and_loses_nothing(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = slurm_server(runs)
    try:
        run_id = first.create(epochs=4)["id"]
        job = wait_for(lambda: (r := first.run(run_id))["step"] > 5 and r["job_id"], what="training")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.client.close()
        second = slurm_server(runs, port=int(first.url.rsplit(":", 1)[1]))
        try:
            assert second.run(run_id)["job_id"] == job  # the same job, re-attached by its id
            done = second.wait_status(run_id, "completed", "failed", "interrupted")
            assert done["status"] == "completed", done["error"]
            assert all_steps(second, run_id) == list(range(1, done["total_steps"] + 1))
            assert [s["epoch"] for s in second.client.get(f"/api/runs/{run_id}/samples").json()] == [1, 2, 3, 4]
        finally:
            second.stop()
    finally:
        cancel_jobs(runs)


def test_the_cluster_runs_two_at_once_past_max_concurrent_and_queues_the_third_with_its_reason(cluster):
    """max_concurrent=1 limits local runs only; the node's 2 CPUs take two one-CPU jobs, the third waits in Slurm."""
    ids = [cluster.create(epochs=1000, seed=i)["id"] for i in range(3)]
    wait_for(lambda: all(cluster.run(i)["step"] > 0 for i in ids[:2]), what="two jobs training at once")
    third = wait_for(lambda: (r := cluster.run(ids[2]))["job_state"] and r["job_state"].startswith("pending:") and r,
                     what="the third pending")  # fmt: skip
    assert third["status"] == "queued" and third["job_state"] in ("pending: Resources", "pending: Priority")
    cluster.client.post(f"/api/runs/{ids[2]}/cancel")  # a pending job: cancelled at once, its job removed
    assert cluster.run(ids[2])["status"] == "cancelled"
    for i in ids[:2]:
        cluster.client.post(f"/api/runs/{i}/cancel")
    for i in ids[:2]:
        cluster.wait_status(i, "cancelled")
        assert wait_for(lambda: (r := cluster.run(i))["job_id"] is None and r, what="reaped")["exit_code"] == 0


def job_fields(job: str) -> dict[str, str]:
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, check=True).stdout
    return dict(part.split("=", 1) for part in shown.split() if "=" in part)


def test_a_runs_own_resources_go_to_sbatch_over_the_servers(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = slurm_server(runs, GANBOARD_SLURM_TIME="30", GANBOARD_SLURM_MEM="200M", GANBOARD_SLURM_REQUEUE="2")
    try:
        form = server.client.get("/api/form").json()["slurm"]
        assert form == {"partition": None, "time": "30", "cpus": 1, "mem": "200M", "gpus": 0, "options": [], "requeue": 2}
        own = {"time": "0:07:00", "mem": "300m", "options": ["--comment=ganboard-test"]}
        r = server.client.post("/api/runs", json={"config": {**TINY, "epochs": 1000}, "slurm": own})
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["slurm"] == {**form, **own, "mem": "300M"}  # what it left out, the server's
        job = wait_for(lambda: cluster_job(server, run["id"]), what="its job")
        fields = job_fields(job)
        assert fields["TimeLimit"] == "00:07:00" and fields["MinMemoryNode"] == "300M" and fields["NumCPUs"] == "1"
        assert fields["Comment"] == "ganboard-test" and fields["Requeue"] == "0"  # Slurm never reruns it by itself
        plain = server.create(epochs=1000)  # a run that says nothing gets the server's
        assert plain["slurm"] == form
        fields = job_fields(wait_for(lambda: cluster_job(server, plain["id"]), what="its job"))
        assert fields["TimeLimit"] == "00:30:00" and fields["MinMemoryNode"] == "200M"
    finally:
        server.stop()
        cancel_jobs(runs)


def cluster_job(server: Server, run_id: int) -> str | None:
    return server.run(run_id)["job_id"]


def test_a_run_its_time_limit_stops_is_requeued_from_its_checkpoint_as_often_as_it_asks(cluster):
    """Slurm's real time limit, 1 minute (its smallest; slurmctld enforces it within 30 s after): Slurm sends SIGTERM,
    the worker saves resume.pt and reports; the run is queued again as a new job that resumes from there (requeue 1).
    Then it is cancelled: that the second time limit leaves it stopped with Slurm's reason (not requeued again) is
    tests/test_slurm_resources.py's, with Slurm's answers faked (waiting for it here cost CI another 1.5 minutes)."""
    r = cluster.client.post("/api/runs", json={"config": {**TINY, "epochs": 10_000}, "slurm": {"time": "1", "requeue": 1}})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    first = wait_for(lambda: (r := cluster.run(run_id))["status"] == "running" and r["job_id"], what="training")
    again = wait_for(lambda: (r := cluster.run(run_id))["requeued"] == 1 and r["restarts"] and r["status"] == "running" and r,
                     timeout=300, what="requeued after the time limit, its worker training again")  # fmt: skip
    assert again["attempt"] == 2 and again["job_id"] != first, again
    assert again["error"].startswith(f"requeued after Slurm's time limit, 1 of 1: Slurm job {first} reached its time "
                                     "limit (state TIMEOUT"), again["error"]  # fmt: skip
    log = (cluster.runs_dir / str(run_id) / "worker.log").read_text()
    assert "--- attempt 2" in log and " --resume " in log.split("--- attempt 2")[1].split("\n")[0]
    resumed_at = again["restarts"][-1]["step"]
    assert resumed_at > 0  # from the checkpoint its worker saved when Slurm's SIGTERM came
    wait_for(lambda: cluster.run(run_id)["step"] > resumed_at + 5, what="steps after the requeue")

    cluster.client.post(f"/api/runs/{run_id}/cancel")
    done = cluster.wait_status(run_id, "cancelled")
    final = wait_for(lambda: (r := cluster.run(run_id))["job_id"] is None and r, what="its second job reaped")
    assert final["requeued"] == 1 and final["resumable"] and done["attempt"] == 2, final
    steps = all_steps(cluster, run_id)
    assert steps == list(range(1, len(steps) + 1))  # every step stored once, across the two jobs


def test_a_runs_folder_the_nodes_cannot_see_is_refused_at_start(tmp_path):
    """The server in a mount namespace of its own with a tmpfs over its runs folder: what it writes there, the node
    (slurmd, outside the namespace) cannot see, as a node without the shared filesystem would not."""
    runs = tmp_path / "private"
    runs.mkdir()
    serve = f"mount -t tmpfs tmpfs {runs} && exec {sys.executable} -m app.cli serve --runs-dir {runs} --port {free_port()}"
    out = subprocess.run(["unshare", "-m", "sh", "-c", serve], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "GANBOARD_EXECUTOR": "slurm"})  # fmt: skip
    if "mount:" in out.stderr or "unshare:" in out.stderr:
        pytest.skip(f"cannot make a private mount here: {out.stderr.strip()}")
    assert out.returncode == 2, out.stderr
    assert f"the runs folder {runs} is not shared with the Slurm nodes" in out.stderr
    assert "Traceback" not in out.stderr
