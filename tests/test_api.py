"""Every API route and its errors, against the real server; plus the metric downsampling."""

from __future__ import annotations

import math
import os

import pytest

from app.storage.history import thinned
from tests.conftest import wait_for
from trainer.protocol import ROW_COLUMNS


@pytest.fixture(scope="module")
def finished(server):
    run = server.create(epochs=1)
    server.wait_status(run["id"], "completed")
    return server.run(run["id"])


@pytest.fixture(scope="module")
def running(server):
    run = server.create(epochs=1000)
    wait_for(lambda: server.run(run["id"])["status"] == "running", what="a running run")
    yield run
    server.client.post(f"/api/runs/{run['id']}/cancel")


def test_form_lists_fields_presets_and_devices(server):
    form = server.client.get("/api/form").json()
    assert {f["name"] for f in form["fields"]} >= {"dataset", "image_size", "batch_size", "lr_g", "device"}
    assert form["presets"]["article"]["image_size"] == 96 and form["presets"]["quick"]["dataset"] == "emoji"
    assert form["devices"][:2] == ["auto", "cpu"]


@pytest.mark.parametrize(
    "config, field",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": 50}, "image_size"),
        ({"lr_g": -1}, "lr_g"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"dataset": "folder", "data_path": "/no/such/folder"}, "data_path"),
        ({"epochs": "many"}, "epochs"),
        ({"batchsize": 64}, "batchsize"),
    ],
)
def test_bad_config_is_422_naming_the_field_and_stores_nothing(server, config, field):
    before = len(server.client.get("/api/runs").json())
    r = server.client.post("/api/runs", json={"config": config})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "config", field]]
    assert len(server.client.get("/api/runs").json()) == before


def test_an_empty_required_field_says_required(server):
    """What an emptied form field sends: null. It said "Input should be a valid integer"."""
    r = server.client.post("/api/runs", json={"config": {"batch_size": None, "lr_g": None, "dataset": None, "data_path": None}})
    assert r.status_code == 422
    msgs = {e["loc"][-1]: e["msg"] for e in r.json()["detail"]}
    assert msgs == {"batch_size": "required (the default is 64)", "lr_g": "required (the default is 0.0002)",
                    "dataset": "required (the default is emoji)"}  # data_path may be empty


def test_the_api_docs_list_each_route_once(server):
    paths = server.client.get("/openapi.json").json()["paths"]
    assert paths["/api/form"]["get"]["tags"] == ["form"] and paths["/api/machine"]["get"]["tags"] == ["machine"]


def test_the_api_docs_name_each_model_once(server):
    """Two response models of one name are listed by their module paths (app__api__SampleOut): each says what it holds."""
    schemas = server.client.get("/openapi.json").json()["components"]["schemas"]
    assert [name for name in schemas if "__" in name] == []
    assert {"SampleGridOut", "GeneratedOut"} <= set(schemas)


def test_malformed_bodies_are_422(server):
    assert server.client.post("/api/runs", content=b"\xff\xfe not json", headers={"content-type": "application/json"}).status_code == 422
    assert server.client.post("/api/runs", json={"name": "x" * 101}).status_code == 422
    assert server.client.post("/api/runs", json={"config": []}).status_code == 422


def test_list_get_and_metrics(server, finished):
    runs = server.client.get("/api/runs").json()
    assert runs == sorted(runs, key=lambda r: -r["id"])  # newest first
    assert server.client.get(f"/api/runs/{finished['id']}").json()["status"] == "completed"
    total = finished["total_steps"]
    after = server.client.get(f"/api/runs/{finished['id']}/metrics", params={"after": 5}).json()
    assert after["step"] == list(range(6, total + 1))
    few = server.client.get(f"/api/runs/{finished['id']}/metrics", params={"max_points": 10}).json()
    assert 2 <= len(few["step"]) <= 10 and few["step"][0] == 1 and few["step"][-1] == total
    samples = server.client.get(f"/api/runs/{finished['id']}/samples").json()
    assert [s["epoch"] for s in samples] == [1]


def test_metrics_between_after_and_before(server, finished):
    """A zoomed chart reads one range at full resolution; a range that holds no step is refused, naming both bounds."""
    url = f"/api/runs/{finished['id']}/metrics"
    total = finished["total_steps"]
    inside = server.client.get(url, params={"after": 2, "before": total}).json()
    assert inside["step"] == list(range(3, total))
    assert server.client.get(url, params={"before": 3}).json()["step"] == [1, 2]
    for after, before in [(5, 5), (6, 5)]:
        r = server.client.get(url, params={"after": after, "before": before})
        assert r.status_code == 422 and "before" in r.json()["detail"] and "after" in r.json()["detail"]
    assert server.client.get(url, params={"before": 0}).status_code == 422


@pytest.mark.parametrize("route", ["", "/metrics", "/samples", "/checkpoints", "/samples/epoch_0001.png", "/checkpoints/netg.pth"])
def test_unknown_run_is_404(server, route):
    r = server.client.get(f"/api/runs/987654{route}")
    assert r.status_code == 404 and "not found" in r.json()["detail"]


@pytest.mark.parametrize("verb, route", [("post", "cancel"), ("post", "resume")])
def test_unknown_run_actions_are_404(server, verb, route):
    assert getattr(server.client, verb)(f"/api/runs/987654/{route}").status_code == 404
    assert server.client.delete("/api/runs/987654").status_code == 404


@pytest.mark.parametrize(
    "name", ["..%2Fconfig.json", "..%2F..%2Fganboard.db", "%2Fetc%2Fpasswd", "..%5Cconfig.json", "resume.pt.tmp", "nope.pth"]
)
def test_file_names_with_path_tricks_are_404(server, finished, name):
    for folder in ("checkpoints", "samples"):
        r = server.client.get(f"/api/runs/{finished['id']}/{folder}/{name}")
        assert r.status_code == 404, (folder, name)


def test_conflicts_are_409(server, finished, running):
    assert server.client.delete(f"/api/runs/{running['id']}").status_code == 409
    assert server.client.post(f"/api/runs/{running['id']}/resume").status_code == 409
    assert server.client.post(f"/api/runs/{finished['id']}/cancel").status_code == 409
    assert server.client.post(f"/api/runs/{finished['id']}/resume").status_code == 409


def test_queued_run_cancels_at_once_and_deletes(server, running):
    blocker = server.create(epochs=1000)  # with `running`, both worker slots are busy: the next run queues
    wait_for(lambda: server.run(blocker["id"])["status"] == "running", what="the second slot")
    queued = server.create()
    assert server.run(queued["id"])["status"] == "queued"
    assert server.client.post(f"/api/runs/{queued['id']}/cancel").json()["status"] == "cancelled"
    one_step = server.create()  # a queued run deletes in one step: nothing runs it, nothing to stop
    assert server.run(one_step["id"])["status"] == "queued"
    assert server.client.delete(f"/api/runs/{one_step['id']}").status_code == 204
    assert server.client.get(f"/api/runs/{one_step['id']}").status_code == 404
    server.client.post(f"/api/runs/{blocker['id']}/cancel")
    assert server.client.delete(f"/api/runs/{queued['id']}").status_code == 204
    assert server.client.get(f"/api/runs/{queued['id']}").status_code == 404
    assert not (server.runs_dir / str(queued["id"])).exists()


def test_pages_and_docs(server, finished):
    index = server.client.get("/")
    assert index.status_code == 200 and 'id="run-form"' in index.text
    assert 'data-clone-id="7"' in server.client.get("/?clone=7").text
    page = server.client.get(f"/runs/{finished['id']}")
    assert page.status_code == 200 and 'id="loss-chart"' in page.text
    missing = server.client.get("/runs/987654")
    assert missing.status_code == 404 and "Traceback" not in missing.text and "not found" in missing.text
    assert 'class="topbar"' in missing.text and 'href="/#new-run"' in missing.text  # the app's own page, its top bar
    garbled = server.client.get("/runs/<b>x")
    assert garbled.status_code == 422 and 'class="topbar"' in garbled.text and "run_id: Input should be a valid integer" in garbled.text
    assert "<b>x" not in garbled.text  # nothing from the address is echoed as markup
    assert server.client.get("/docs").status_code == 200
    assert "/api/runs/{run_id}/checkpoints/{name}" in server.client.get("/openapi.json").json()["paths"]
    assert server.client.get("/static/vendor/uPlot.iife.min.js").status_code == 200
    guide = server.client.get("/guide/health.md")  # the run page's health alerts link to it
    assert guide.status_code == 200 and guide.headers["content-type"].startswith("text/plain") and "d_wins" in guide.text
    assert 'href="/guide/health.md"' in page.text
    for name in ("nothing.md", "..%2Fpyproject.toml", "architecture.MD"):
        assert server.client.get(f"/guide/{name}").status_code == 404


def test_downsampling_keeps_spikes_first_and_last():
    def row(step: int, **values) -> tuple:  # in protocol.ROW_COLUMNS order, whatever metrics it holds
        base = dict(step=step, epoch=1, batch=0, loss_d=1.0, loss_g=2.0 if step % 2 == 0 else None, d_x=0.5, d_g_z=0.5)
        return tuple({**base, **values}.get(c) for c in ROW_COLUMNS)

    rows = [row(i) for i in range(1, 200_001)]
    rows[123_456] = row(123_457, loss_d=99.0)  # a spike in loss_d
    rows[7_777] = row(7_778, d_g_z=-5.0)  # a dip in D(G(z))
    keep = [i for i, _ in thinned(iter(rows), len(rows), 2000)]  # one pass, as over the database's chunks
    assert len(keep) <= 2000
    assert {0, 123_456, 7_777, len(rows) - 1} <= set(keep)
    assert keep == sorted(keep)
    assert [i for i, _ in thinned(rows[:50], 50, 2000)] == list(range(50))
    assert not any(math.isnan(rows[i][ROW_COLUMNS.index("loss_d")]) for i in keep)


def test_paths_outside_the_data_roots_are_refused(server, tmp_path):
    outside = tmp_path / "faces"  # pytest's tmp_path is not under the server's data roots
    outside.mkdir()
    inside_link = server.runs_dir.parent / "sneaky"
    inside_link.symlink_to(outside)
    for path in (outside, inside_link):
        r = server.client.post("/api/runs", json={"config": {"dataset": "folder", "data_path": str(path)}})
        assert r.status_code == 422
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "config", "data_path"] and "outside the data roots" in error["msg"]


@pytest.mark.parametrize(
    "dataset, files, config, field, reason",
    [
        ("mnist", [], {}, "data_path", "no mnist files under"),
        ("fashion-mnist", ["FashionMNIST/raw/t10k-images-idx3-ubyte"], {}, "data_path", "set download to true"),
        ("cifar10", [], {}, "data_path", "no cifar10 files under"),
        ("folder", [], {}, "data_path", "holds no images (0 files"),
        ("folder", ["notes.txt", "sub/readme.md"], {}, "data_path", "holds no images (2 files"),
        ("folder", ["a.png", "sub/b.JPG"], {"batch_size": 3}, "batch_size", "3 is more than the 2 images"),
    ],
)
def test_data_that_cannot_train_is_422_at_submit(server, dataset, files, config, field, reason):
    """What a look at the files tells is said at once, on the field, not by the worker after its wait in the queue."""
    root = server.runs_dir.parent / f"data-{dataset}-{len(files)}-{len(config)}"
    root.mkdir()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # not decoded: only counted
    before = len(server.client.get("/api/runs").json())
    r = server.client.post("/api/runs", json={"config": {"dataset": dataset, "data_path": str(root), **config}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "config", field] and reason in error["msg"], error
    assert len(server.client.get("/api/runs").json()) == before


def test_torchvision_files_present_or_download_on_pass_the_submit_check(tmp_path):
    from trainer.config import TrainConfig, data_error

    assert data_error(TrainConfig(dataset="mnist", data_path=str(tmp_path), download=True)) is None
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")
    assert data_error(TrainConfig(dataset="mnist", data_path=str(tmp_path))) is None


def test_an_init_checkpoint_that_would_run_code_is_refused(server):
    import pickle

    marker = server.runs_dir.parent / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = server.runs_dir.parent / "evil.pth"
    evil.write_bytes(pickle.dumps(Evil()))
    run = server.create(netg_init=str(evil))
    failed = server.wait_status(run["id"], "failed", "completed")
    assert failed["status"] == "failed" and "not a loadable weights file" in failed["error"]
    assert not marker.exists()


def test_the_server_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, app.main, app.cli; from app.main import create_app; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_head_on_downloads_answers_their_headers(server, finished):
    """Issue 9, defect 12: HEAD was 405."""
    (ckpt, *_) = server.client.get(f"/api/runs/{finished['id']}/checkpoints").json()
    (sample,) = server.client.get(f"/api/runs/{finished['id']}/samples").json()
    for item in (ckpt, sample):
        r = server.client.head(item["url"])
        assert r.status_code == 200 and int(r.headers["content-length"]) == item["size"] and r.content == b""
    assert server.client.head(f"/api/runs/{finished['id']}/checkpoints/nope.pth").status_code == 404


def test_downloads_are_named_in_one_style(server, finished):
    run_id = finished["id"]
    server.client.patch(f"/api/runs/{run_id}", json={"name": "my run"})
    try:
        for path, name in (("checkpoints/netg.pth", "my_run-netg.pth"), ("export/metrics.csv", "my_run-metrics.csv"),
                           ("log/worker.log", "my_run-worker.log")):  # fmt: skip
            r = server.client.get(f"/api/runs/{run_id}/{path}")
            assert r.status_code == 200 and f'filename="{name}"' in r.headers["content-disposition"], (path, r.headers)
    finally:
        server.client.patch(f"/api/runs/{run_id}", json={"name": finished["name"]})


def test_worker_log_tail_then_what_came_after(server, finished):
    run_id = finished["id"]
    log = server.client.get(f"/api/runs/{run_id}/log").json()
    whole = server.client.get(f"/api/runs/{run_id}/log/worker.log").text
    assert log["start"] == 0 and log["end"] == len(whole.encode()) and log["text"] == whole and "training on cpu" in whole
    assert server.client.get(f"/api/runs/{run_id}/log", params={"after": log["end"]}).json() == {
        "text": "", "start": log["end"], "end": log["end"]}
    assert server.client.get(f"/api/runs/{run_id}/log", params={"after": 5}).json()["text"] == whole.encode()[5:].decode()
    assert server.client.get("/api/runs/999999/log").status_code == 404


def test_one_way_to_count_epochs_and_a_stopped_runs_mean_speed(server):
    """`epoch` counts completed epochs, `epoch_in_progress` the one the newest step lies in: while it trains, and where
    a cancel stopped it, as its checkpoint's label says. A stopped run has its mean images/s over the time it ran."""
    run = server.create(epochs=1000)
    running = wait_for(lambda: (r := server.run(run["id"]))["status"] == "running" and r["step"] > 0 and r)
    assert running["epoch_in_progress"] == running["epoch"] + 1 and running["mean_images_per_s"] > 0
    server.client.post(f"/api/runs/{run['id']}/cancel")
    stopped = server.wait_status(run["id"], "cancelled")
    per_epoch = 4096 // 256  # TINY: procedural faces, batches of 256
    assert stopped["epoch"] == stopped["step"] // per_epoch and stopped["mean_images_per_s"] > 0
    if stopped["step"] % per_epoch:  # stopped inside an epoch
        assert stopped["epoch_in_progress"] == stopped["epoch"] + 1
        labels = {c["name"]: c["label"] for c in server.client.get(f"/api/runs/{run['id']}/checkpoints").json()}
        assert f"in epoch {stopped['epoch'] + 1}, step {stopped['step']}" in labels.values(), labels
    else:
        assert stopped["epoch_in_progress"] is None
