"""The dashboard through the real path: uvicorn, SQLite (and PostgreSQL for a whole run, and a resume), worker processes,
websockets."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from websockets.sync.client import connect

from app.runs.hub import PAGE_INTERVAL
from tests.conftest import TINY, wait_for
from tests.databases import KINDS
from tests.harness import page_messages
from trainer.config import TrainConfig
from trainer.models import build_generator


def read_until(ws, done, limit=10_000):
    """Messages from a page websocket until done(seen) holds."""
    seen: list[dict] = []
    for _ in range(limit):
        seen += [{**msg, "_at": time.monotonic()} for msg in page_messages(ws.recv(timeout=120))]
        if done(seen):
            return seen
    raise AssertionError("message limit reached")


@pytest.mark.parametrize("server", KINDS, indirect=True)
def test_a_run_streams_metrics_and_samples_then_serves_its_checkpoint(server):
    posted = time.monotonic()
    run = server.create()
    assert run["status"] == "queued"
    with connect(f"{server.ws_url}/ws/runs/{run['id']}") as ws:
        seen = read_until(ws, lambda s: any(m["type"] == "batch" for m in s) and any(m["type"] == "epoch" for m in s))
    first = {kind: next(m["_at"] for m in seen if m["type"] == kind) - posted for kind in ("batch", "epoch")}
    print(f"\nPOST to first batch message {first['batch']:.1f} s, to first epoch sample {first['epoch']:.1f} s")  # not asserted
    assert seen[0]["type"] == "snapshot" and seen[0]["run"]["id"] == run["id"]
    batch = next(m for m in seen if m["type"] == "batch")
    assert batch["rows"]["step"][0] >= 1 and len(batch["rows"]["loss_d"]) == len(batch["rows"]["step"])
    epoch = next(m for m in seen if m["type"] == "epoch")
    assert epoch["sample"]["url"].endswith("epoch_0001.png")
    assert server.client.get(epoch["sample"]["url"]).content.startswith(b"\x89PNG")

    done = server.wait_status(run["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["step"] == done["total_steps"] and done["epoch"] == 2
    exited = wait_for(lambda: (r := server.run(run["id"]))["exit_code"] is not None and r, what="the worker to exit")
    assert exited["exit_code"] == 0 and exited["pid"] is None

    metrics = server.client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 100000}).json()
    assert metrics["step"] == list(range(1, done["total_steps"] + 1))  # every step once

    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert {"netg.pth", "netd.pth", "resume.pt", "netg_0002.pth"} <= set(listed)
    r = server.client.get(f"/api/runs/{run['id']}/checkpoints/netg.pth")
    assert r.status_code == 200
    path = server.runs_dir / str(run["id"]) / "checkpoints" / "netg.pth"
    assert int(r.headers["content-length"]) == path.stat().st_size == len(r.content)
    assert r.headers["content-disposition"].startswith("attachment") and "netg.pth" in r.headers["content-disposition"]
    assert hashlib.sha256(r.content).hexdigest() == listed["netg.pth"]["sha256"] and listed["netg.pth"]["size"] == len(r.content)
    download = server.runs_dir.parent / "netg-download.pth"
    download.write_bytes(r.content)
    netg = build_generator(TrainConfig(**TINY))
    netg.load_state_dict(torch.load(download, weights_only=True))


def test_a_page_gets_at_most_one_frame_per_page_interval_and_every_step(server):
    """The worker sends every 0.25 s; a page gets what was queued merged, at most once per PAGE_INTERVAL (app/runs/hub.py).
    The bound holds however slow the machine: the n-th frame is sent no earlier than (n - 1) intervals after the first,
    which is sent after `before`."""
    run = server.create(epochs=1000)
    before = time.monotonic()
    with connect(f"{server.ws_url}/ws/runs/{run['id']}") as ws:
        assert page_messages(ws.recv(timeout=120))[0]["type"] == "snapshot"
        arrivals, steps = [], []
        while len(steps) < 100 or len(arrivals) < 8:
            messages = page_messages(ws.recv(timeout=120))
            arrivals.append(time.monotonic())
            steps += [s for m in messages if m["type"] == "batch" for s in m["rows"]["step"]]
    server.client.post(f"/api/runs/{run['id']}/cancel")
    server.wait_status(run["id"], "cancelled", "failed")
    assert len(arrivals) <= (arrivals[-1] - before) / PAGE_INTERVAL + 1
    assert set(range(steps[0], steps[-1] + 1)) <= set(steps)  # merged, nothing dropped


@pytest.mark.parametrize("server", KINDS, indirect=True)
def test_cancel_then_resume_carries_on_the_step_numbers(server):
    run = server.create(epochs=1000)
    wait_for(lambda: server.run(run["id"])["step"] > 0, what="the first steps")
    r = server.client.post(f"/api/runs/{run['id']}/cancel")
    assert r.status_code == 200
    cancelled = server.wait_status(run["id"], "cancelled", "failed")
    assert cancelled["status"] == "cancelled"
    names = {c["name"] for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert "resume.pt" in names

    assert server.client.post(f"/api/runs/{run['id']}/resume").json()["status"] == "queued"
    wait_for(lambda: server.run(run["id"])["step"] > cancelled["step"], what="steps after the resume")
    server.client.post(f"/api/runs/{run['id']}/cancel")
    server.wait_status(run["id"], "cancelled")
    steps = server.client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 100000}).json()["step"]
    assert steps == list(range(1, len(steps) + 1))  # no gap, no duplicate across the two attempts


def test_a_cancel_while_fid_is_scored_saves_where_the_run_stopped(server):
    """Issue 19's lost steps: a cancel while the evaluator works (here FID/KID every epoch) is answered at the next
    batch; the checkpoint is where the run stopped, so Resume loses nothing, and the worker said when it heard the stop."""
    from trainer.fid import FeaturesUnavailable, weights_path

    try:
        weights_path()
    except FeaturesUnavailable as e:
        pytest.skip(str(e))
    run = server.create(epochs=1000, fid=True, eval_every=1)
    wait_for(lambda: server.run(run["id"])["scoring"], timeout=300, what="an FID being scored")
    server.client.post(f"/api/runs/{run['id']}/cancel")
    cancelled = server.wait_status(run["id"], "cancelled", "failed")
    assert cancelled["status"] == "cancelled" and cancelled["error"] is None, cancelled["error"]
    listed = {c["name"]: c for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
    assert listed["resume.pt"]["step"] == cancelled["step"]
    journal = (server.runs_dir / str(run["id"]) / "journal.jsonl").read_text()
    assert '"type":"stopping"' in journal


def test_a_worker_that_fails_shows_failed_with_its_error(server):
    broken = server.runs_dir.parent / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    run = server.create(dataset="folder", data_path=str(broken), batch_size=1)  # counted at submit, unreadable later
    failed = server.wait_status(run["id"], "failed", "completed")
    assert failed["status"] == "failed"
    assert "could be read" in failed["error"] and str(broken) in failed["error"]
    # Data that cannot load: the message alone (the traceback is in the worker log) and no Resume, which would fail too.
    assert "Traceback" not in failed["error"] and failed["resumable"] is False
    assert "Traceback" in server.client.get(f"/api/runs/{run['id']}/log").json()["text"]
    r = server.client.post(f"/api/runs/{run['id']}/resume")
    assert r.status_code == 409 and "could be read" in r.json()["detail"]


def test_a_worker_killed_outright_fails_with_its_log(server):
    import os
    import signal

    run = server.create(epochs=1000)
    pid = wait_for(lambda: server.run(run["id"])["step"] > 0 and server.run(run["id"])["pid"], what="a running worker")
    os.kill(pid, signal.SIGKILL)
    failed = server.wait_status(run["id"], "failed")
    assert "killed (SIGKILL)" in failed["error"]
