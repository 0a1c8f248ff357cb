"""Machine stats (issue 12 part 4): the worker's sampler, its message, how the server stores and serves it."""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect, text

from app.storage.db import make_engine
from tests.conftest import scratch_server, wait_for
from tests.harness import page_messages
from trainer.protocol import SystemMessage, parse_message
from trainer.system import Gpu, SystemSampler, host_gpus, pci_bus_id

MB = 1024 * 1024


class FakeNvml:
    """pynvml's calls the sampler makes, answering for one GPU at PCI bus id 00000000:41:00.0."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, fail_after: int | None = None):
        self.reads, self.fail_after, self.shutdowns = 0, fail_after, 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        if bus_id != "00000000:41:00.0":
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "handle-41"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "handle-41"

    def nvmlDeviceGetName(self, handle):
        return "Fake H100"

    def nvmlDeviceGetUtilizationRates(self, handle):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=2048 * MB, total=80 * 1024 * MB, free=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 61


def test_a_sample_holds_this_process_and_its_gpu():
    sampler = SystemSampler(lambda s: None, lambda: 42, gpu=Gpu("00000000:41:00.0", FakeNvml()), interval=1)
    sum(i * i for i in range(2_000_000))  # some CPU time to measure
    sample = sampler.sample()
    assert sample["step"] == 42 and sample["cpu_percent"] > 0
    assert 10 < sample["rss_mb"] < 100_000  # this interpreter, in MB
    assert (sample["gpu_util"], sample["gpu_mem_mb"], sample["gpu_temp_c"]) == (87.0, 2048.0, 61.0)
    SystemMessage(seq=1, attempt=1, **sample)  # what the worker sends is a valid message


def test_without_nvml_or_its_gpu_the_gpu_fields_are_null(caplog):
    wrong_board = Gpu("00000000:01:00.0", FakeNvml())
    assert wrong_board.read() == {"gpu_util": None, "gpu_mem_mb": None, "gpu_temp_c": None}
    assert "NVML could not open" in caplog.text
    lost = Gpu("00000000:41:00.0", FakeNvml(fail_after=1))
    assert lost.read()["gpu_util"] == 87.0
    assert lost.read()["gpu_util"] is None and lost.read()["gpu_temp_c"] is None  # once failed, null, no exception
    assert caplog.text.count("NVML failed") == 1


def test_the_sampler_thread_sends_until_stopped_and_survives_a_failing_send():
    got, calls = [], {"n": 0}
    enough = threading.Event()

    def send(sample):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("journal full")
        got.append(sample)
        if len(got) >= 2:
            enough.set()

    sampler = SystemSampler(send, lambda: 7, interval=0.05).start()
    assert enough.wait(10)
    sampler.stop()
    assert not sampler.thread.is_alive()
    assert calls["n"] >= 3 and all(s["step"] == 7 and "gpu_util" not in s for s in got)  # no GPU: no GPU fields


def test_host_gpus_lists_memory_and_is_empty_without_nvml():
    nvml = FakeNvml()
    assert host_gpus(nvml) == [{"index": 0, "name": "Fake H100", "memory_used_mb": 2048.0, "memory_total_mb": 81920.0}]
    assert nvml.shutdowns == 1

    class Broken(FakeNvml):
        def nvmlInit(self):
            raise RuntimeError("NVML_ERROR_LIBRARY_NOT_FOUND")

    assert host_gpus(Broken()) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"cpu_percent": float("nan")},
        {"rss_mb": float("inf")},
        {"gpu_temp_c": -1},
        {"cpu_percent": None},  # always known
        {"step": -1},
        {"disk": 3},
    ],
)
def test_system_messages_with_bad_fields_are_refused_naming_the_field(bad):
    good = {"seq": 1, "attempt": 1, "type": "system", "time": 1.7e9, "step": 3, "cpu_percent": 150.0, "rss_mb": 300.0}
    assert parse_message(json.dumps(good)).gpu_util is None
    with pytest.raises(ValidationError) as e:
        parse_message(json.dumps({**good, **bad}))  # NaN and Infinity as Python's json writes them
    assert next(iter(bad)) in str(e.value)


def test_an_old_database_gains_the_system_samples_table(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE system_samples"))
    engine.dispose()
    engine = make_engine(db_url)
    assert "system_samples" in inspect(engine).get_table_names()
    assert "ix_system_samples_run_time" in {i["name"] for i in inspect(engine).get_indexes("system_samples")}


def test_a_real_run_reports_its_machine_to_the_api_the_snapshot_and_the_pages():
    from websockets.sync.client import connect

    with scratch_server(GANBOARD_SYSTEM_SECONDS="0.2") as server:
        run = server.create()  # the tiny run
        live: list[dict] = []
        with connect(f"{server.ws_url}/ws/runs/{run['id']}") as ws:
            while not any(m["type"] == "system" for m in live):
                live += page_messages(ws.recv(timeout=120))
        done = server.wait_status(run["id"], "completed", "failed")
        assert done["status"] == "completed", done["error"]
        # the worker exits once the server has everything: a sample taken after the final status is stored by then
        wait_for(lambda: server.run(run["id"])["exit_code"] is not None, what="the worker to exit")
        samples = server.client.get(f"/api/runs/{run['id']}/system").json()
        assert len(samples) >= 2
        assert all(s["cpu_percent"] >= 0 and s["rss_mb"] > 10 and "gpu_util" in s for s in samples)
        assert [s["time"] for s in samples] == sorted(s["time"] for s in samples)
        assert samples[-1]["step"] > 0 and max(s["cpu_percent"] for s in samples) > 0  # it trained while sampled
        pushed = next(m for m in live if m["type"] == "system")
        assert pushed["rss_mb"] > 10 and "cpu_percent" in pushed
        assert len(server.client.get(f"/api/runs/{run['id']}/system", params={"limit": 1}).json()) == 1
        with connect(f"{server.ws_url}/ws/runs/{run['id']}") as ws:
            assert json.loads(ws.recv(timeout=30))["system"] == samples
        assert server.client.get("/api/runs/999/system").status_code == 404
        assert server.client.get(f"/api/runs/{run['id']}/system", params={"limit": 0}).status_code == 422

        machine = server.client.get("/api/machine").json()
        assert machine["cpu"]["count"] == os.cpu_count() and machine["running"] == []
        assert isinstance(machine["gpus"], list)


def test_a_cuda_device_is_found_in_nvml_by_its_pci_bus_id(monkeypatch):
    import torch

    props = SimpleNamespace(pci_domain_id=0, pci_bus_id=0x41, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    bus_id = pci_bus_id(torch.device("cuda", 0))
    assert bus_id == "00000000:41:00.0" and Gpu(bus_id, FakeNvml()).read()["gpu_util"] == 87.0
    assert pci_bus_id(torch.device("cpu")) is None
