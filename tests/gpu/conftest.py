"""The CUDA checks (bench/gpu_check.py runs them): every test here needs a GPU and is skipped, saying so, without one.
tests/conftest.py marks them `gpu`."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.fixture(scope="module", autouse=True)
def cold_cache(tmp_path_factory):
    """A cold emoji cache for each module, which the server's workers share (the start-up check measures it cold, then
    warm); the other tests' cache is left as it was."""
    before = os.environ.get("GANBOARD_CACHE")
    os.environ["GANBOARD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("GANBOARD_CACHE", None)
    else:
        os.environ["GANBOARD_CACHE"] = before
