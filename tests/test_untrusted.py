"""Issue 20: what a worker that cannot be trusted with the server's files, a lost database, odd bodies and a torn
journal could do to a real server. Each test failed on the code before its fix."""

from __future__ import annotations

import io
import json
import os
import resource
import select
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import REPO, free_port, start_server, wait_for
from trainer.protocol import EpochMessage, parse_message

SECRET = b"the server's own file, never to be served"


@pytest.fixture(scope="module")
def finished(server) -> dict:
    run = server.create(epochs=1)
    server.wait_status(run["id"], "completed")
    return {"id": run["id"], "dir": server.runs_dir / str(run["id"])}


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "outside" / "secret.pth"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def swap_for_link(path: Path, target: Path) -> bytes:
    """Put a symlink to `target` where `path` was; returns what `path` held, to put back."""
    held = path.read_bytes()
    path.unlink()
    path.symlink_to(target)
    return held


def put_back(path: Path, held: bytes) -> None:
    path.unlink()
    path.write_bytes(held)


# -- 1. files outside the run's folder -----------------------------------------------------------------------------


def test_a_registered_file_replaced_by_a_link_is_not_served_nor_zipped(server, finished, secret):
    """Before: 200 with the outside file's bytes, and the bytes in samples.zip."""
    run_id, run_dir = finished["id"], finished["dir"]
    ckpt = run_dir / "checkpoints" / "netg.pth"
    (sample,) = server.client.get(f"/api/runs/{run_id}/samples").json()
    grid = run_dir / "samples" / sample["name"]
    held = {ckpt: swap_for_link(ckpt, secret), grid: swap_for_link(grid, secret)}
    try:
        for url in (f"/api/runs/{run_id}/checkpoints/netg.pth", sample["url"]):
            r = server.client.get(url)
            assert r.status_code == 404 and SECRET not in r.content, (url, r.status_code)
        assert server.client.get(f"/api/runs/{run_id}/export/samples.zip").status_code == 404  # its only grid
    finally:
        for path, data in held.items():
            put_back(path, data)
    assert server.client.get(f"/api/runs/{run_id}/checkpoints/netg.pth").content == held[ckpt]  # the real file: served
    log = (run_dir / "worker.log").read_text()
    assert "not served: checkpoints/netg.pth is a link or lies behind one" in log


def test_a_checkpoints_folder_that_is_a_link_is_not_served(server, finished, tmp_path):
    run_id, run_dir = finished["id"], finished["dir"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "netg.pth").write_bytes(SECRET)
    folder = run_dir / "checkpoints"
    folder.rename(tmp_path / "kept")
    folder.symlink_to(elsewhere)
    try:
        r = server.client.get(f"/api/runs/{run_id}/checkpoints/netg.pth")
        assert r.status_code == 404 and SECRET not in r.content
        r = server.client.post(f"/api/runs/{run_id}/samples/generate", json={"checkpoint": "netg.pth"})
        assert r.status_code == 404
    finally:
        folder.unlink()
        (tmp_path / "kept").rename(folder)


def test_a_fifo_or_a_link_reported_as_a_checkpoint_is_not_registered(tmp_path, secret):
    """A worker reports a symlink (and a FIFO) as new checkpoints, here through its journal, replayed at start-up.
    Before: the link was registered and served with the outside file's bytes."""
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs)
    try:
        run_id = srv.create(epochs=1)["id"]
        srv.wait_status(run_id, "completed")
    finally:
        srv.stop()
    run_dir = runs / str(run_id)
    (run_dir / "checkpoints" / "evil.pth").symlink_to(secret)
    os.mkfifo(run_dir / "checkpoints" / "pipe.pth")
    (run_dir / "samples" / "epoch_0009.png").symlink_to(secret)
    lines = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    attempt, seq = lines[-1]["attempt"], max(line["seq"] for line in lines if line["attempt"] == lines[-1]["attempt"])
    epoch = EpochMessage(seq=seq + 1, attempt=attempt, epoch=9, step=1, sample="epoch_0009.png",
                         checkpoints=["evil.pth", "pipe.pth"], images_per_s=0, seconds=0)  # fmt: skip
    with (run_dir / "journal.jsonl").open("a") as f:
        f.write(epoch.model_dump_json() + "\n")
    srv = start_server(runs)
    try:
        names = [c["name"] for c in srv.client.get(f"/api/runs/{run_id}/checkpoints").json()]
        assert "evil.pth" not in names and "pipe.pth" not in names and "netg.pth" in names
        assert srv.client.get(f"/api/runs/{run_id}/checkpoints/evil.pth").status_code == 404
        assert srv.client.get(f"/api/runs/{run_id}/samples/epoch_0009.png").status_code == 404
        zipped = zipfile.ZipFile(io.BytesIO(srv.client.get(f"/api/runs/{run_id}/export/samples.zip").content))
        assert zipped.namelist() == ["epoch_0001.png"]
    finally:
        srv.stop()
    log = (run_dir / "worker.log").read_text()
    assert "checkpoint evil.pth not registered: checkpoints/evil.pth is a link or lies behind one" in log
    assert "checkpoint pipe.pth not registered: checkpoints/pipe.pth is not a regular file" in log


def test_a_hard_link_to_a_file_outside_the_run_is_not_served_zipped_nor_written(server, finished, secret):
    """A hard link is no symlink: opened without following links, it is the outside file itself. Before: 200 with the
    outside file's bytes, in samples.zip too, and the server's notes appended to the file worker.log was linked to.
    The worker's own links (netg.pth is the newest numbered copy) are still served."""
    run_id, run_dir = finished["id"], finished["dir"]
    ckpt, log = run_dir / "checkpoints" / "netg.pth", run_dir / "worker.log"
    (numbered,) = ckpt.parent.glob("netg_0*.pth")
    ckpt.unlink()  # as the worker links it (another test may have put a copy back)
    os.link(numbered, ckpt)
    assert server.client.get(f"/api/runs/{run_id}/checkpoints/netg.pth").content == ckpt.read_bytes()
    (sample,) = server.client.get(f"/api/runs/{run_id}/samples").json()
    grid = run_dir / "samples" / sample["name"]
    diary = secret.with_name("diary.txt")
    diary.write_bytes(SECRET)
    held = {path: path.read_bytes() for path in (ckpt, grid, log)}
    for path, outside in ((ckpt, secret), (grid, secret), (log, diary)):
        path.unlink()
        os.link(outside, path)
    try:
        for url in (f"/api/runs/{run_id}/checkpoints/netg.pth", sample["url"]):
            r = server.client.get(url)
            assert r.status_code == 404 and SECRET not in r.content, (url, r.status_code)
        assert server.client.get(f"/api/runs/{run_id}/export/samples.zip").status_code == 404  # its only grid
        assert diary.read_bytes() == SECRET  # the refusals were not noted into it
    finally:
        for path, data in held.items():
            path.unlink()
            path.write_bytes(data)
    assert server.client.get(f"/api/runs/{run_id}/checkpoints/netg.pth").content == held[ckpt]
    assert "is a hard link to a file outside its folder" in (server.runs_dir.parent / f"server-{server.url.rsplit(':', 1)[1]}.log").read_text()


# -- 8. a bad journal line ------------------------------------------------------------------------------------------


def valid(line: bytes) -> bool:
    try:
        parse_message(line)
    except ValueError:
        return False
    return True


@pytest.mark.timeout(900)  # three attempts of a run
@pytest.mark.parametrize("bad", [
    b'{"type":"epoch","seq":999,"attempt":1,"epoch":1,"sample":"epoch_00\n',  # complete, not JSON (a full disk)
    b'{"type":"batch","seq":999,"attempt":1,"rows":{"st',  # torn: no newline, the worker killed mid-write
], ids=["an invalid epoch line", "a torn last line"])  # fmt: skip
def test_one_bad_journal_line_loses_only_itself(server, bad):
    """Before: every Resume failed with "Invalid JSON" (the epoch line), or the next attempt's first message was glued
    to the torn line and lost with it."""
    run_id = server.create(epochs=50)["id"]
    wait_for(lambda: server.client.get(f"/api/runs/{run_id}/samples").json(), 600, what="the first epoch")
    assert server.client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    server.wait_status(run_id, "cancelled")
    journal = server.runs_dir / str(run_id) / "journal.jsonl"
    with journal.open("ab") as f:
        f.write(bad)

    for _ in range(2):  # the second Resume starts from an epoch whose line comes after the bad one
        grids = len(server.client.get(f"/api/runs/{run_id}/samples").json())
        assert server.client.post(f"/api/runs/{run_id}/resume").status_code == 200
        wait_for(lambda: server.run(run_id)["status"] == "failed"
                 or len(server.client.get(f"/api/runs/{run_id}/samples").json()) > grids, 600, what="another epoch")  # fmt: skip
        assert server.run(run_id)["status"] == "running", server.run(run_id)["error"]
        assert server.client.post(f"/api/runs/{run_id}/cancel").status_code == 200
        server.wait_status(run_id, "cancelled", timeout=600)
    lines = journal.read_bytes().splitlines()
    assert [line for line in lines if not valid(line)] == [bad.rstrip(b"\n")]  # only the bad line is not a message
    for attempt in (2, 3):
        messages = [json.loads(line) for line in lines if valid(line) and json.loads(line)["attempt"] == attempt]
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))  # its every message, from 1


# -- 3. a lost database --------------------------------------------------------------------------------------------


@pytest.mark.timeout(900)  # two runs one after the other, on a shared 2-core machine
def test_a_new_run_never_writes_into_an_old_runs_folder(tmp_path):
    """The database lost while the run folders remain. Before: the new run 1 wrote into the old run 1's folder, and
    the old journal's messages were taken for the new run's (38 rows of its 40 steps, 3 of them the old run's)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs)
    try:
        old = srv.create(epochs=2, seed=1)  # more steps than the new run will have
        srv.wait_status(old["id"], "completed", timeout=600)
    finally:
        srv.stop()
    old_journal = (runs / "1" / "journal.jsonl").read_bytes()
    for name in ("ganboard.db", "ganboard.db-wal", "ganboard.db-shm"):
        (runs / name).unlink(missing_ok=True)

    srv = start_server(runs)
    try:
        new = srv.create(epochs=1, seed=2)
        assert new["id"] == 1
        done = srv.wait_status(1, "completed", "failed", timeout=600)
        assert done["status"] == "completed", done["error"]
        steps = srv.client.get("/api/runs/1/metrics", params={"max_points": 10**6}).json()["step"]
        assert steps == list(range(1, done["total_steps"] + 1))  # its own steps, each once, and nothing of the old run
        assert [s["epoch"] for s in srv.client.get("/api/runs/1/samples").json()] == [1]
    finally:
        srv.stop()
    assert not (runs / "1" / "journal.jsonl").read_bytes().startswith(old_journal)
    (aside,) = runs.glob("1.orphan-*")
    assert (aside / "journal.jsonl").read_bytes() == old_journal  # the old run's files, untouched
    assert f"moved aside to {aside}" in (tmp_path / f"server-{srv.url.rsplit(':', 1)[1]}.log").read_text()


# -- 7. large bodies -----------------------------------------------------------------------------------------------


def raw_post(url: str, headers: dict[str, str]) -> socket.socket:
    where = urlsplit(url)
    s = socket.create_connection((where.hostname, where.port), timeout=60)
    head = {"Host": where.netloc, "Content-Type": "application/json", **headers}
    s.sendall("".join(["POST /api/runs HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in head.items()), "\r\n"]).encode())
    return s


def status_of(s: socket.socket) -> int:
    return int(s.recv(4096).split(b" ")[1])


def test_a_body_over_the_limit_is_refused_unread(server):
    """Before: a 200 MB body was read whole (+796 MiB) and then refused with 422; a client that announced one and sent
    nothing waited for ever."""
    with raw_post(server.url, {"Content-Length": str(200 << 20)}) as s:  # announced, never sent
        assert status_of(s) == 413

    with raw_post(server.url, {"Transfer-Encoding": "chunked"}) as s:
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        sent, answer = 0, None
        try:
            while sent < 200 << 20 and not select.select([s], [], [], 0)[0]:  # until the server answers
                s.sendall(chunk)
                sent += 1 << 16
            answer = status_of(s)
        except (ConnectionResetError, BrokenPipeError):  # it answered and closed while we sent: the answer may be lost
            pass
        assert sent < 200 << 20 and answer in (413, None)
    assert server.client.get("/api/runs").status_code == 200


# -- 9. a second server, tokens in the log, odd numbers ---------------------------------------------------------------


def test_a_second_server_on_the_same_runs_folder_refuses_to_start(server):
    """Before: it started, and both servers spawned workers for the same queued runs."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), "--runs-dir", str(server.runs_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"another GANboard server (pid {server.proc.pid}) uses the runs folder {server.runs_dir}" in done.stderr
    assert "Traceback" not in done.stderr
    assert server.client.get("/api/runs").status_code == 200


def test_mis_shaped_token_queries_never_reach_the_log(tmp_path):
    """Before: `;token=`, `token%3D` and `token[]=` were written to the access log in clear."""
    token = "sesame-0123456789"
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_TOKEN=token, wait_path="/login")
    try:
        for secret in (token, "a-wrong-guess-42"):
            for query in (f"a=1;token={secret}", f"token%3D{secret}", f"token[]={secret}", f"token%253D{secret}",
                          f"%74oken={secret}", f"token={secret}"):  # fmt: skip
                srv.client.get(f"/api/runs?{query}")
            try:
                connect(f"{srv.ws_url}/ws/runs/1?x=1;token={secret}", open_timeout=30).close()
            except Exception:  # refused (no run 1, or a wrong token): only its log line matters
                pass
    finally:
        srv.stop()
    log = (tmp_path / f"server-{urlsplit(srv.url).port}.log").read_text()
    assert "GET /api/runs?a=1;token=***" in log
    assert token not in log and "a-wrong-guess-42" not in log


def test_a_run_list_of_5000_digits_is_a_422_page(server):
    """Before: 500 (int() refuses more than 4,300 digits)."""
    r = server.client.get("/compare", params={"runs": "9" * 5000})
    assert r.status_code == 422 and "not a run id: 99999999999999999999…" in r.text


# -- 5. idle connections and open files ------------------------------------------------------------------------------


def test_idle_connections_cannot_use_up_the_open_files(tmp_path):
    """`ganboard serve` with at most 128 open files (soft 64, raised to 128 at start) and 300 idle connections held
    open. Before: every fd went to an idle connection, never closed, and no new request was served again."""
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "GANBOARD_DATA_ROOTS": json.dumps([str(tmp_path)])}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--runs-dir", str(tmp_path / "runs")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 128)),
        )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"

        def answered() -> bool:
            try:
                return httpx.get(f"{url}/api/runs").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answered, 60, what="ganboard serve to answer")
        assert "Max open files            128                  128" in Path(f"/proc/{proc.pid}/limits").read_text()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(300)]
        wait_for(answered, 60, what="a new request to be served")  # once the idle ones are closed, 5 s on
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(30)
