"""A run's own Slurm job in `POST /api/runs` (`slurm`: partition, time, cpus, mem, gpus, options, requeue): malformed
values are a 422 naming the field, on any server; a server without Slurm refuses them, and its form has none. What the
executor makes of them with a real Slurm is in tests/test_slurm.py."""

from __future__ import annotations

import pytest

from tests.harness import TINY


@pytest.mark.parametrize(
    ("slurm", "loc", "says"),
    [
        ({"time": "1h"}, ["body", "slurm", "time"], "'1h' is not a Slurm time limit"),
        ({"time": "1-25:00:00:00"}, ["body", "slurm", "time"], "is not a Slurm time limit"),
        ({"mem": "16GB"}, ["body", "slurm", "mem"], "'16GB' is not a Slurm memory size"),
        ({"mem": "0"}, ["body", "slurm", "mem"], "is not a Slurm memory size"),
        ({"options": ["--output=/tmp/elsewhere"]}, ["body", "slurm", "options", 0], "--output is set by GANboard"),
        ({"options": ["qos=normal"]}, ["body", "slurm", "options", 0], "is not an sbatch long option"),
        ({"cpus": 0}, ["body", "slurm", "cpus"], "greater than or equal to 1"),
        ({"requeue": -1}, ["body", "slurm", "requeue"], "greater than or equal to 0"),
        ({"partition": "gpu; rm -rf"}, ["body", "slurm", "partition"], "should match pattern"),
        ({"walltime": "1:00:00"}, ["body", "slurm", "walltime"], "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_slurm_resource_is_a_422_naming_it(server, slurm, loc, says):
    r = server.client.post("/api/runs", json={"config": TINY, "executor": "slurm", "slurm": slurm})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == loc and says in error["msg"], error


def test_a_server_without_slurm_refuses_a_job_and_offers_none(server):
    r = server.client.post("/api/runs", json={"config": TINY, "slurm": {"time": "10"}})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "slurm"] and "for a run on the slurm executor" in error["msg"]
    assert "slurm" not in server.client.get("/api/form").json()
    run = server.client.post("/api/runs", json={"config": {**TINY, "max_steps": 1}}).json()
    assert run["slurm"] is None and run["requeued"] == 0
