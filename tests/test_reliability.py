"""Faults, through the real server and real workers: nothing lost, nothing stored twice, the queue moves on. The server
killed mid-run is tried on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal

from tests.conftest import start_server, wait_for


def all_steps(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()["step"]


def test_server_killed_and_restarted_mid_run_loses_nothing(tmp_path, db_url):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = start_server(runs, database_url=db_url)
    run = first.create(epochs=6, eval_every=1000)  # no FID: on a loaded CPU it took minutes at an epoch's end
    wait_for(lambda: first.run(run["id"])["step"] > 5, what="training to start")
    first.proc.send_signal(signal.SIGKILL)  # no shutdown, no goodbye
    first.proc.wait()
    first.client.close()

    second = start_server(runs, port=int(first.url.rsplit(":", 1)[1]), database_url=db_url)
    try:
        done = second.wait_status(run["id"], "completed", "failed", "interrupted")
        assert done["status"] == "completed", done["error"]
        steps = all_steps(second, run["id"])
        assert steps == list(range(1, done["total_steps"] + 1))  # every step exactly once
        assert [s["epoch"] for s in second.client.get(f"/api/runs/{run['id']}/samples").json()] == [1, 2, 3, 4, 5, 6]
    finally:
        second.stop()


def test_worker_killed_mid_epoch_fails_then_resume_continues(server):
    run = server.create(epochs=1000, save_every=1)
    wait_for(lambda: server.run(run["id"])["epoch"] >= 2, what="two epochs and their checkpoints")
    os.kill(server.run(run["id"])["pid"], signal.SIGKILL)
    failed = server.wait_status(run["id"], "failed")
    assert "killed (SIGKILL)" in failed["error"]

    server.client.post(f"/api/runs/{run['id']}/resume")
    resumed_from = wait_for(lambda: (r := server.run(run["id"]))["status"] == "running" and r["total_steps"] and r["step"],
                            what="the resumed attempt")  # fmt: skip
    wait_for(lambda: server.run(run["id"])["step"] > resumed_from + 20, what="steps after the resume")
    server.client.post(f"/api/runs/{run['id']}/cancel")
    server.wait_status(run["id"], "cancelled")
    steps = all_steps(server, run["id"])
    assert steps == list(range(1, len(steps) + 1))  # once each up to the checkpoint, and on after it


def test_cuda_asked_for_without_a_gpu_fails_and_the_queue_moves_on(server):
    bad = server.create(device="cuda")
    good = server.create(epochs=1)
    failed = server.wait_status(bad["id"], "failed")
    assert "no CUDA GPU is visible" in failed["error"]
    assert server.wait_status(good["id"], "completed", "failed")["status"] == "completed"


def test_several_runs_at_once_while_the_api_is_read_lose_no_row(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = start_server(runs, GANBOARD_MAX_CONCURRENT="3")
    try:
        ids = [server.create(epochs=2, seed=i)["id"] for i in range(3)]
        reads = 0
        while any(server.run(i)["status"] in ("queued", "running") for i in ids):
            for i in ids:  # readers beside the writers: WAL lets both go on
                assert server.client.get(f"/api/runs/{i}/metrics", params={"max_points": 50}).status_code == 200
                reads += 1
            assert server.client.get("/api/runs").status_code == 200
        assert reads > 10
        for i in ids:
            run = server.run(i)
            assert run["status"] == "completed", run["error"]
            assert all_steps(server, i) == list(range(1, run["total_steps"] + 1))
    finally:
        server.stop()
