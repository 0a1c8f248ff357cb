"""The worker's machine, sampled every few seconds on a daemon thread: its process's CPU % and resident memory (psutil)
and, on CUDA, the training GPU's utilisation, memory used and temperature (NVML, from nvidia-ml-py).

Each reading takes well under a millisecond (a few /proc reads and three NVML queries) and never touches torch or
the GPU's stream, so training does not wait on it (bench/system_cost.py measures it). NVML missing or failing only
leaves the GPU fields null, with one log line; nothing here raises into training.

    GANBOARD_SYSTEM_SECONDS  seconds between samples (default 5)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

log = logging.getLogger("ganboard.system")
INTERVAL_SECONDS = 5.0
MB = 1024 * 1024
NO_GPU = {"gpu_util": None, "gpu_mem_mb": None, "gpu_temp_c": None}


def interval_seconds() -> float:
    return float(os.environ.get("GANBOARD_SYSTEM_SECONDS", INTERVAL_SECONDS))


def pci_bus_id(device: Any) -> str | None:
    """The NVML PCI bus id of a torch CUDA device, or None on another device.

    The torch index counts only the GPUs CUDA_VISIBLE_DEVICES leaves, in CUDA's order, while NVML counts every GPU in
    PCI order: the two indices differ whenever CUDA_VISIBLE_DEVICES is set (the supervisor always sets it). The PCI
    bus id names the same board on both sides, so the handle is looked up by it.
    """
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    p = torch.cuda.get_device_properties(device.index or 0)
    return f"{p.pci_domain_id:08x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"


class Gpu:
    """One GPU through NVML. `read()` gives the GPU fields of a SystemMessage; after a failure they stay null."""

    def __init__(self, bus_id: str, nvml: Any = None):
        self.nvml = nvml
        self.handle = None
        try:
            if self.nvml is None:
                import pynvml as nvml_module

                self.nvml = nvml_module
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        except Exception as e:  # no library, no driver, no such board: the CPU fields still come
            log.warning("GPU stats off: NVML could not open the GPU at %s (%s: %s)", bus_id, type(e).__name__, e)

    def read(self) -> dict[str, float | None]:
        if self.handle is None:
            return dict(NO_GPU)
        try:
            n, h = self.nvml, self.handle
            return {
                "gpu_util": float(n.nvmlDeviceGetUtilizationRates(h).gpu),
                "gpu_mem_mb": n.nvmlDeviceGetMemoryInfo(h).used / MB,
                "gpu_temp_c": float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            }
        except Exception as e:
            log.warning("GPU stats off: NVML failed (%s: %s)", type(e).__name__, e)
            self.handle = None
            return dict(NO_GPU)


class SystemSampler:
    """Calls `send(sample)` every `interval` seconds with the fields of a SystemMessage, the step from `step()`."""

    def __init__(self, send: Callable[[dict], None], step: Callable[[], int], gpu: Gpu | None = None,
                 interval: float | None = None):  # fmt: skip
        self.send, self.step, self.gpu = send, step, gpu
        self.interval = interval_seconds() if interval is None else interval
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first call starts psutil's measurement and returns 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)

    def start(self) -> SystemSampler:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def sample(self) -> dict:
        """CPU % since the previous sample (100 = one core busy), RSS now, the GPU now."""
        with self.process.oneshot():
            cpu, rss = self.process.cpu_percent(), self.process.memory_info().rss / MB
        gpu = self.gpu.read() if self.gpu else {}
        return {"time": time.time(), "step": self.step(), "cpu_percent": cpu, "rss_mb": rss, **gpu}

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.send(self.sample())
            except Exception:  # never into training; the next sample tries again
                log.exception("system sample failed")


def host_gpus(nvml: Any = None) -> list[dict]:
    """Every GPU of this machine as NVML numbers them (nvidia-smi's index, which the supervisor hands to
    CUDA_VISIBLE_DEVICES): index, name, memory used and total in MB. Empty without NVML or a GPU."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append({"index": i, "name": nvml.nvmlDeviceGetName(handle), "memory_used_mb": memory.used / MB,
                         "memory_total_mb": memory.total / MB})  # fmt: skip
        return gpus
    except Exception as e:
        log.warning("NVML failed listing the GPUs (%s: %s)", type(e).__name__, e)
        return []
    finally:
        nvml.nvmlShutdown()
