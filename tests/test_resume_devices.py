"""resume.pt across devices: a state saved on a GPU resumes on the CPU (and one saved on the CPU resumes on a GPU)."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import pytest
import torch
import torch.serialization

from tests.test_trainer import TINY, ListSink
from trainer.config import TrainConfig
from trainer.loop import train
from trainer.protocol import STATS

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@contextmanager
def storages_tagged_as_cuda():
    """torch.save records every storage as living on cuda:0, as it does for a resume.pt written by a GPU run."""
    entry = (0, lambda storage: "cuda:0" if storage.device.type == "cpu" else None, lambda storage, location: None)
    torch.serialization.register_package(*entry)
    try:
        yield
    finally:
        torch.serialization._package_registry.remove(entry)


def as_if_saved_on_cuda(path) -> None:
    """Rewrite a CPU run's resume.pt the way a CUDA run writes it: storages on cuda:0, a CUDA generator state, and
    capturable Adam (its `step` a float32 tensor on the device)."""
    state = torch.load(path, weights_only=True)
    state["rng_cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    for key in ("opt_g", "opt_d"):
        for group in state[key]["param_groups"]:
            group["capturable"] = True
        for moments in state[key]["state"].values():
            moments["step"] = moments["step"].to(torch.float32)
    with storages_tagged_as_cuda():
        torch.save(state, path)


def test_a_state_saved_on_cuda_resumes_on_the_cpu(tmp_path, caplog):
    cfg = TrainConfig(**TINY, epochs=2, g_every=2)
    whole = ListSink()
    train(cfg, tmp_path / "whole", whole)

    stop = threading.Event()
    first = ListSink(stop, stop_after=5)
    assert train(cfg, tmp_path / "split", first, stop=stop) == "cancelled"
    resume_pt = tmp_path / "split" / "checkpoints" / "resume.pt"
    as_if_saved_on_cuda(resume_pt)
    if not torch.cuda.is_available():  # the file really asks for a GPU unless it is mapped to the CPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(resume_pt, weights_only=True)

    second = ListSink()
    with caplog.at_level(logging.INFO, logger="trainer"):
        assert train(cfg, tmp_path / "split", second, resume=True) == "completed"
    assert "CUDA generator state" in caplog.text
    for key in STATS:  # the CPU generator's state came back, so the noise and the losses carry on exactly
        assert first.rows[key] + second.rows[key] == whole.rows[key], key


@needs_cuda
@pytest.mark.parametrize("first_device, second_device", [("cuda", "cpu"), ("cpu", "cuda"), ("cuda", "cuda")])
def test_resume_across_devices(tmp_path, first_device, second_device):
    cfg = TrainConfig(**{**TINY, "device": first_device}, epochs=2)
    stop = threading.Event()
    first = ListSink(stop, stop_after=5)
    assert train(cfg, tmp_path, first, stop=stop) == "cancelled"
    second = ListSink()
    cfg = cfg.model_copy(update={"device": second_device})
    assert train(cfg, tmp_path, second, resume=True) == "completed"
    steps = first.rows["step"] + second.rows["step"]
    assert steps == list(range(1, len(steps) + 1))
    assert all(v is not None for v in second.rows["loss_d"])

