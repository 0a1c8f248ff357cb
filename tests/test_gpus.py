"""GPU inventory and placement (app/gpus.py) with a fake nvidia-smi listing GPUs 0-3: the server's own
CUDA_VISIBLE_DEVICES narrows what it lists, places and checks memory on."""

from __future__ import annotations

import os
import re

import pytest

from app import gpus
from app.runs import memory
from tests.harness import start_server

FAKE_SMI = """#!/bin/sh
# nvidia-smi --query-gpu=index,uuid,memory.total,memory.used --format=csv,noheader,nounits, for four H100s
for i in 0 1 2 3; do echo "$i, GPU-fake-000$i, 81559, $((1000 * (i + 1)))"; done
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    gpus._visible.cache_clear()
    yield bin_dir
    gpus._visible.cache_clear()


@pytest.mark.parametrize(
    "mask, visible",
    [(None, ("0", "1", "2", "3")), ("1", ("1",)), ("2,0", ("2", "0")), ("GPU-fake-0003", ("3",)), ("1,9,2", ("1",)),
     ("", ()), ("-1", ())],
)  # fmt: skip
def test_the_servers_cuda_visible_devices_narrows_the_inventory(fake_smi, monkeypatch, mask, visible):
    if mask is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    assert gpus.visible() == visible
    assert list(gpus.free_memory()) == list(visible)


def test_placement_memory_and_sampling_agree_on_the_servers_gpus(fake_smi, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert gpus.place("auto", busy=[]) == ("1", "cuda:0")
    assert gpus.place("cuda", busy=["1"]) == ("3", "cuda:0")
    assert gpus.place("cuda:3", busy=[]) == ("3", "cuda:0")
    assert gpus.place("cpu", busy=[]) == (gpus.ON_CPU, "cpu") == ("", "cpu")
    assert gpus.place("cuda", busy=["1"], count=2) == ("3,1", "cuda:0")  # a run on two GPUs: the free one first
    with pytest.raises(gpus.PlacementError, match="device cuda:0: this server's GPUs are 1, 3"):
        gpus.place("cuda:0", busy=[])
    assert memory.available("cuda:3") == ("GPU 3", (81559 - 4000) * 2**20)
    assert memory.available("cuda:0") is None  # not this server's
    assert memory.available("auto")[0] == "GPU 1"  # the one with the most free memory of the two
    assert gpus.idle(["1"]) == "3" and gpus.idle(["1", "3"]) is None and gpus.idle([gpus.UNKNOWN]) is None
    assert gpus.environment("3") == {"CUDA_VISIBLE_DEVICES": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_a_server_with_cuda_visible_devices_1_places_a_run_on_gpu_1(fake_smi, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = start_server(runs, CUDA_VISIBLE_DEVICES="1", PATH=os.environ["PATH"])
    try:
        assert server.client.get("/api/form").json()["devices"] == ["auto", "cpu", "cuda:1"]
        run = server.create(device="auto")
        server.wait_status(run["id"], "running", "failed")  # no real GPU: the worker fails, after it was placed
        log = (runs / str(run["id"]) / "worker.log").read_text()
        assert re.search(r"--- attempt 1, .*\(local, CUDA_VISIBLE_DEVICES=1\): trainer\.worker .*--device cuda:0", log)
        refused = server.client.post("/api/runs", json={"config": {"device": "cuda:2"}})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "config", "device"]
        assert "device cuda:2: this server's GPUs are 1" in refused.json()["detail"][0]["msg"]
    finally:
        server.stop()


def test_a_run_on_several_gpus_takes_free_ones_and_no_more_than_there_are(fake_smi, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpus.place("auto", busy=["0,1"], count=2) == ("2,3", "cuda:0")
    assert gpus.idle(["0,1", "2"]) == "3"  # a worker on "0,1" holds both
    with pytest.raises(gpus.PlacementError, match="gpus: 5 asked for, this server has 4"):
        gpus.place("cuda", busy=[], count=5)
    with pytest.raises(gpus.PlacementError, match="takes device cuda or auto"):
        gpus.place("cuda:1", busy=[], count=2)
