"""Carrying a run on: "train N more epochs" on a completed run, and Resume with changed settings where they are safe to
change (learning rates, epochs, the save and eval schedule), each change recorded in the run's `changes`. Through the
real server and real workers; the optimiser's learning rate after a resume, on the CPU."""

from __future__ import annotations

import torch

from tests.conftest import wait_for
from trainer.config import TrainConfig
from trainer.state import TrainState

PER_EPOCH = 4096 // 256  # TINY: procedural faces, batches of 256


def steps_of(server, run_id: int) -> list[int]:
    return server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 10**6}).json()["step"]


def test_a_completed_run_trains_more_epochs_from_its_checkpoint(server):
    run = server.create(epochs=1)
    server.wait_status(run["id"], "completed", timeout=600)  # minutes on a busy CPU: its FID at the end
    r = server.client.post(f"/api/runs/{run['id']}/extend", json={"epochs": 1})
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    done = server.wait_status(run["id"], "completed", "failed", timeout=600)
    assert (done["status"], done["epoch"], done["step"], done["config"]["epochs"]) == ("completed", 2, 2 * PER_EPOCH, 2)
    assert steps_of(server, run["id"]) == list(range(1, 2 * PER_EPOCH + 1))  # the same run, its charts carry on
    (change,) = done["changes"]
    assert change["changed"] == {"epochs": [1, 2]} and change["epoch"] == 1 and change["step"] == PER_EPOCH
    assert [s["epoch"] for s in server.client.get(f"/api/runs/{run['id']}/samples").json()] == [1, 2]


def test_extend_and_resume_say_what_they_cannot_do(server):
    run = server.create(epochs=1000)
    wait_for(lambda: server.run(run["id"])["step"] > 0, what="a running run")
    assert server.client.post(f"/api/runs/{run['id']}/extend", json={"epochs": 1}).status_code == 409  # it runs
    server.client.post(f"/api/runs/{run['id']}/cancel")
    stopped = server.wait_status(run["id"], "cancelled")
    r = server.client.post(f"/api/runs/{run['id']}/extend", json={"epochs": 1})
    assert r.status_code == 409 and "only a completed run" in r.json()["detail"]
    assert server.client.post(f"/api/runs/{run['id']}/extend", json={"epochs": 0}).status_code == 422

    for config, field, words in (({"ngf": 16}, "ngf", "the checkpoint depends on it"),
                                 ({"lr_d": -1}, "lr_d", "greater than 0"),
                                 ({"epochs": stopped["epoch"]}, "epochs",  # none done yet: the field's own minimum
                                  "done already" if stopped["epoch"] else "greater than or equal to 1")):  # fmt: skip
        r = server.client.post(f"/api/runs/{run['id']}/resume", json={"config": config})
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "config", field] and words in error["msg"], error
    assert server.run(run["id"])["status"] == "cancelled" and server.run(run["id"])["changes"] == []


def test_resume_with_changed_learning_rates_records_the_change(server):
    run = server.create(epochs=1000)
    wait_for(lambda: server.run(run["id"])["step"] > 0, what="a running run")
    server.client.post(f"/api/runs/{run['id']}/cancel")
    stopped = server.wait_status(run["id"], "cancelled")
    r = server.client.post(f"/api/runs/{run['id']}/resume", json={"config": {"lr_d": 1e-4, "epochs": 999}})
    assert r.status_code == 200 and r.json()["status"] == "queued", r.text
    resumed = r.json()
    assert resumed["config"]["lr_d"] == 1e-4 and resumed["config"]["epochs"] == 999
    (change,) = resumed["changes"]
    assert change["changed"] == {"lr_d": [2e-4, 1e-4], "epochs": [1000, 999]} and change["step"] == stopped["step"]
    wait_for(lambda: server.run(run["id"])["step"] > stopped["step"], what="steps after the resume")
    assert server.run(run["id"])["total_epochs"] == 999
    assert server.run(run["id"])["restarts"] == [{"attempt": 2, "step": stopped["step"]}]  # marked on the page's charts
    server.client.post(f"/api/runs/{run['id']}/cancel")
    server.wait_status(run["id"], "cancelled")
    assert server.client.post(f"/api/runs/{run['id']}/resume").json()["changes"] == [change]  # a plain resume: no change
    server.client.post(f"/api/runs/{run['id']}/cancel")


def test_a_resumed_optimiser_trains_at_the_configs_learning_rate(tmp_path):
    cpu = torch.device("cpu")
    cfg = TrainConfig(image_size=32, ngf=8, ndf=8, nz=16, lr_g=2e-4, lr_d=2e-4)
    torch.save(TrainState.build(cfg, cpu).resume_state(), tmp_path / "resume.pt")
    changed = TrainState.build(cfg.model_copy(update={"lr_g": 5e-5, "lr_d": 1e-3}), cpu)
    changed.load(tmp_path / "resume.pt")
    assert [g["lr"] for g in changed.opt_g.param_groups] == [5e-5] and [g["lr"] for g in changed.opt_d.param_groups] == [1e-3]
