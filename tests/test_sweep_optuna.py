"""An Optuna sweep through the real server: the TPE sampler asks trials as runs finish, each epoch's SWD reports to
the study, and the median pruner stops a trial on a learning rate chosen to fail (0.05) early, as `pruned` with the
reason; the study carries on after a restart."""

from __future__ import annotations

import pytest

from tests.harness import TINY, start_server, wait_for


@pytest.mark.timeout(900)  # two short runs one after another, and a restart
def test_median_pruner_stops_the_failing_learning_rate_early(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    spec = {
        "name": "tpe", "method": "optuna", "trials": 3, "parallel": 1, "base": {**TINY, "epochs": 3},
        "axes": {"lr_g+lr_d": {"min": 1e-4, "max": 0.05, "log": True}},
        "first": [{"lr_g+lr_d": 2e-4}, {"lr_g+lr_d": 0.05}],  # a good setting, then one chosen to fail
        "pruning": {"startup_trials": 1, "warmup_epochs": 0},
    }  # fmt: skip
    server = start_server(runs_dir, GANBOARD_MAX_CONCURRENT="1")
    try:
        r = server.client.post("/api/sweeps", json=spec)
        assert r.status_code == 201, r.text
        sweep = r.json()
        assert len(sweep["runs"]) == 1 and sweep["runs"][0]["settings"]["lr_g+lr_d"] == 2e-4  # one at a time
        sweep_url = f"/api/sweeps/{sweep['id']}"
        wait_for(lambda: len(server.client.get(sweep_url).json()["runs"]) == 2, 600, what="the second trial")
    finally:
        server.stop()
    server = start_server(runs_dir, GANBOARD_MAX_CONCURRENT="1")  # the study is rebuilt from the stored runs
    try:
        server.client.post(f"{sweep_url}/resume").raise_for_status()  # the trial the restart interrupted goes on
        asked = wait_for(lambda: len((s := server.client.get(sweep_url).json())["runs"]) == 3 and s, 800, what="trial 3")
        first, failing, third = asked["runs"]
        assert first["status"] == "completed" and failing["settings"]["lr_g+lr_d"] == 0.05
        assert failing["status"] == "pruned", failing
        assert len(failing["scores"]) < 3 and "median pruner" in failing["error"]
        run = server.run(failing["id"])
        assert run["status"] == "pruned" and "median pruner" in run["error"] and not run["resumable"]
        assert run["sweep_id"] == sweep["id"]
        assert 1e-4 <= third["settings"]["lr_g+lr_d"] <= 0.05  # the sampler's own pick, inside the range
        server.client.post(f"{sweep_url}/cancel").raise_for_status()  # no need to train it: the study asks no more
        done = wait_for(lambda: (s := server.client.get(sweep_url).json())["status"] == "cancelled" and s, 120, what="cancel")
        assert len(done["runs"]) == 3 and done["runs"][2]["status"] in ("cancelled", "pruned")  # the pruner may be first
    finally:
        server.stop()
