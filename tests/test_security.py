"""What a hostile web page, a leaky log, odd bytes and odd numbers can do to a real server (issue 10, items 4-9)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest
from websockets.sync.client import connect

from app.storage.paths import check_paths
from tests.conftest import REPO, TINY, free_port, start_server, wait_for

TOKEN = "sésame, ouvre-toi"  # not ASCII on purpose
BEARER = {"Authorization": f"Bearer {TOKEN}".encode()}
EVIL = "http://evil.example"
LONG = {**TINY, "epochs": 1000}  # a run that stays active until cancelled


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    runs = tmp_path_factory.mktemp("locked") / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_TOKEN=TOKEN, GANBOARD_ALLOWED_HOSTS='["ganboard.test"]', wait_path="/login")
    yield srv
    srv.stop()
    subprocess.run(["pkill", "-f", f"trainer.worker --run-dir {runs}"], check=False)


def handshake(url: str, path: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status a websocket handshake gets (101: accepted), with exactly the headers given."""
    where = urlsplit(url)
    headers = {
        "Host": where.netloc, "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13", **(headers or {}),
    }  # fmt: skip
    request = "".join([f"GET {path} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
    with socket.create_connection((where.hostname, where.port), timeout=30) as s:
        s.sendall(request.encode())
        return int(s.recv(4096).split(b" ")[1])


def server_log(srv) -> str:
    return (srv.runs_dir.parent / f"server-{urlsplit(srv.url).port}.log").read_text(errors="replace")


# -- 4. cross-site requests and DNS rebinding ------------------------------------------------------------------------


def test_cross_site_writes_are_refused_without_a_token(server):
    run_id = server.create(**LONG)["id"]
    port = urlsplit(server.url).port
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{port + 1}"},  # another port of this machine: same site, another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        for method, path in (("POST", f"/api/runs/{run_id}/cancel"), ("DELETE", f"/api/runs/{run_id}")):
            r = server.client.request(method, path, headers=headers)
            assert r.status_code == 403 and r.json() == {"detail": "cross-site request refused"}, (headers, r.text)
    form = server.client.post("/api/runs", data={"name": "x"}, headers={"Origin": EVIL})  # a plain HTML form
    assert form.status_code == 403
    assert server.run(run_id)["status"] in ("queued", "running")
    assert server.client.get("/api/runs", headers={"Origin": EVIL}).status_code == 200  # reading is not refused

    same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert server.client.post(f"/api/runs/{run_id}/cancel", headers=same).status_code == 200


def test_cross_site_writes_are_refused_with_a_token_too(locked):
    browser = httpx.Client(base_url=locked.url, follow_redirects=False)
    assert browser.post("/login", data={"token": TOKEN}).status_code == 303
    for client, headers in ((browser, {}), (locked.client, BEARER)):
        r = client.post("/api/runs", json={"config": TINY}, headers={**headers, "Origin": EVIL})
        assert r.status_code == 403 and r.json()["detail"] == "cross-site request refused"
    assert locked.client.get("/api/runs", headers=BEARER).json() == []


def test_only_the_names_of_this_server_are_accepted(server, locked):
    port = urlsplit(server.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert server.client.get("/api/runs", headers={"Host": host}).status_code == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", f"ganboard.test:{port}", "127.0.0.1"):
        r = server.client.get("/api/runs", headers={"Host": host})
        assert r.status_code == 400 and r.json() == {"detail": "host not allowed"}, host
        assert server.client.delete("/api/runs/1", headers={"Host": host}).status_code == 400
    assert handshake(server.url, "/ws/runs/1", {"Host": f"evil.example:{port}"}) == 403

    # GANBOARD_ALLOWED_HOSTS names pass on any port (a reverse proxy in front); the rest is still refused
    for host in ("ganboard.test", "ganboard.test:8443"):
        assert locked.client.get("/api/runs", headers={**BEARER, "Host": host}).status_code == 200
    assert locked.client.get("/api/runs", headers={**BEARER, "Host": "evil.example"}).status_code == 400


def test_page_websockets_check_the_origin(server):
    run_id = server.create(**LONG)["id"]
    port = urlsplit(server.url).port
    assert handshake(server.url, f"/ws/runs/{run_id}") == 101  # no Origin: not a browser
    assert handshake(server.url, f"/ws/runs/{run_id}", {"Origin": server.url}) == 101
    for origin in (EVIL, f"http://127.0.0.1:{port + 1}", "null"):
        assert handshake(server.url, f"/ws/runs/{run_id}", {"Origin": origin}) == 403, origin
    assert handshake(server.url, f"/ws/runs/{run_id}", {"Sec-Fetch-Site": "cross-site"}) == 403
    server.client.post(f"/api/runs/{run_id}/cancel")


# -- 5. tokens do not leak -------------------------------------------------------------------------------------------


def test_workers_never_see_the_admin_token_and_logs_never_show_a_token(locked):
    run_id = locked.client.post("/api/runs", json={"config": LONG}, headers=BEARER).json()["id"]
    run = wait_for(lambda: (r := locked.client.get(f"/api/runs/{run_id}", headers=BEARER).json())["step"] > 0 and r,
                   what="the worker to report steps (its websocket passes the guard)")  # fmt: skip
    environ = Path(f"/proc/{run['pid']}/environ").read_bytes().split(b"\0")
    assert any(e.startswith(b"GANBOARD_WORKER_TOKEN=") for e in environ)
    assert not [e for e in environ if e.startswith(b"GANBOARD_TOKEN=")]

    assert locked.client.get(f"/api/runs?token={quote(TOKEN)}").status_code == 200
    assert locked.client.get(f"/api/runs/{run_id}?a=1&token={quote_plus(TOKEN)}").status_code == 200
    assert handshake(locked.url, f"/ws/runs/{run_id}?after=0&token={quote(TOKEN)}") == 101
    wait_for(lambda: server_log(locked).count("token=***") >= 3, what="the three requests in the log")
    log = server_log(locked)
    assert '"WebSocket /ws/runs/' in log and f"/api/runs/{run_id}?a=1&token=***" in log
    for form in (TOKEN, quote(TOKEN), quote_plus(TOKEN), quote(TOKEN, safe="")):
        assert form not in log
    locked.client.post(f"/api/runs/{run_id}/cancel", headers=BEARER)


def test_ganboard_serve_keeps_the_token_out_of_its_log(tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "GANBOARD_TOKEN": TOKEN, "GANBOARD_DATA_ROOTS": json.dumps([str(tmp_path)])}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--runs-dir", str(tmp_path / "runs")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def answered() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/runs?token={quote(TOKEN)}").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answered, 60, what="ganboard serve to answer")
        wait_for(lambda: "token=***" in log.read_text(), what="the request in the log")
        assert quote(TOKEN) not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)


# -- 6. non-ASCII credentials ----------------------------------------------------------------------------------------


def test_non_ascii_credentials_are_compared_not_crashed_on(locked):
    anon = httpx.Client(base_url=locked.url, follow_redirects=False)
    assert anon.get("/api/runs", headers=BEARER).status_code == 200  # a non-ASCII GANBOARD_TOKEN works
    assert anon.get(f"/api/runs?token={quote(TOKEN)}").status_code == 200
    assert anon.get("/api/runs", headers={"Authorization": "Bearer ä".encode()}).status_code == 401
    assert anon.get("/api/runs?token=%C3%A4").status_code == 401
    assert anon.get("/api/runs?token=%FF").status_code == 401
    assert anon.get("/api/runs", headers={"Cookie": "ganboard_session=ä".encode()}).status_code == 401
    assert anon.post("/login", data={"token": "ä"}).status_code == 401
    assert anon.post("/login", data={"token": TOKEN}).status_code == 303
    assert anon.get("/api/runs").status_code == 200  # the cookie
    assert handshake(locked.url, "/ws/runs/1", {"Authorization": "Bearer ä"}) == 403
    assert handshake(locked.url, "/ws/worker/1", {"Authorization": "Bearer ä"}) == 403  # app.web.live's own check
    assert "Traceback" not in server_log(locked)


# -- 7. the data roots cannot be raced -------------------------------------------------------------------------------


def test_a_symlinked_data_path_is_stored_resolved(server, tmp_path):
    root = server.runs_dir.parent  # the fixture's GANBOARD_DATA_ROOTS
    inside, outside = root / "faces", tmp_path / "secret"
    inside.mkdir(exist_ok=True)
    outside.mkdir()
    link = root / "faces-link"
    link.symlink_to(inside)
    run = server.create(data_path=str(link), max_steps=1, epochs=1)
    assert run["config"]["data_path"] == str(inside.resolve())

    link.unlink()
    link.symlink_to(outside)  # re-pointed while the run waits: the run keeps the folder that was checked
    assert server.run(run["id"])["config"]["data_path"] == str(inside.resolve())
    assert check_paths(server.run(run["id"])["config"], [root]) is None
    assert check_paths({"data_path": str(link)}, [root]).startswith("data_path: ")
    r = server.client.post("/api/runs", json={"config": {**TINY, "data_path": str(link)}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config", "data_path"]


# -- 8. a config that cannot fit -------------------------------------------------------------------------------------


def test_a_config_too_big_for_the_device_is_refused_before_it_is_queued(server):
    before = len(server.client.get("/api/runs").json())
    huge = dict(image_size=128, ngf=512, ndf=512, nz=1024, batch_size=4096, device="cpu")
    r = server.client.post("/api/runs", json={"config": {**TINY, **huge}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "config", "batch_size"]
    assert "needs about" in error["msg"] and "GiB available" in error["msg"]
    assert len(server.client.get("/api/runs").json()) == before

    article = server.client.post("/api/runs", json={"config": {"device": "cpu", "max_steps": 1, "epochs": 1, **{
        k: v for k, v in server.client.get("/api/form").json()["presets"]["article"].items() if k not in ("device", "epochs")
    }}})  # fmt: skip
    assert article.status_code == 201, article.text
    server.client.post(f"/api/runs/{article.json()['id']}/cancel")


# -- 9. numbers out of range and typos -------------------------------------------------------------------------------


def test_out_of_range_numbers_and_unknown_keys_are_422(server):
    run_id = server.create(max_steps=1, epochs=1)["id"]
    assert server.client.get(f"/api/runs/{run_id}/metrics", params={"after": 2**63}).status_code == 422
    assert server.client.get(f"/api/runs/{run_id}/metrics", params={"after": 2**63 - 1}).status_code == 200
    with connect(f"{server.ws_url}/ws/runs/{run_id}?after={2**70}") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "snapshot"

    before = len(server.client.get("/api/runs").json())
    for body, loc in (
        ('{"config": {"lr_g": NaN}}', ["body", "config", "lr_g"]),
        ('{"config": {"lr_d": Infinity}}', ["body", "config", "lr_d"]),
        ('{"config": {"beta1": -Infinity}}', ["body", "config", "beta1"]),
        ('{"name": NaN}', ["body", "name"]),
        ('{"confg": {"epochs": 1}}', ["body", "confg"]),
    ):
        r = server.client.post("/api/runs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        assert [e["loc"] for e in r.json()["detail"]] == [loc], body
    assert len(server.client.get("/api/runs").json()) == before
