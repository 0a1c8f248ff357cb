"""Sweeps through the real server: a grid of tiny runs trains to the end, survives a restart, is cancelled, resumed
and deleted as a whole; bad specs are refused naming the axis."""

from __future__ import annotations

from tests.harness import TINY, start_server, wait_for


def _metrics_once(server, run: dict) -> None:
    steps = server.client.get(f"/api/runs/{run['id']}/metrics", params={"max_points": 10**6}).json()["step"]
    assert steps == list(range(1, run["total_steps"] + 1)), f"run {run['id']}: every step stored once"


def _sweep(server, sweep_id: int) -> dict:
    return server.client.get(f"/api/sweeps/{sweep_id}").json()


def test_grid_sweep_runs_in_order_survives_a_restart_and_completes(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    server = start_server(runs_dir, GANBOARD_MAX_CONCURRENT="2")
    try:
        spec = {"name": "lr", "base": {**TINY, "epochs": 3}, "axes": {"lr_d": {"values": [2e-4, 1e-3]}}, "seeds": 2}
        plan = server.client.post("/api/sweeps/plan", json=spec).json()
        assert plan["count"] == 4 and len(plan["settings"]) == 4 and plan["seconds"] is None  # nothing measured yet
        r = server.client.post("/api/sweeps", json=spec)
        assert r.status_code == 201, r.text
        sweep = r.json()
        assert [run["settings"] for run in sweep["runs"]] == [
            {"lr_d": 2e-4, "seed": 0}, {"lr_d": 1e-3, "seed": 0}, {"lr_d": 2e-4, "seed": 1}, {"lr_d": 1e-3, "seed": 1}]
        ids = [run["id"] for run in sweep["runs"]]
        assert ids == sorted(ids) and [server.run(i)["name"] for i in ids] == [f"lr #{n}" for n in range(1, 5)]
        assert server.run(ids[0])["config"]["lr_d"] == 2e-4
        wait_for(lambda: _sweep(server, sweep["id"])["counts"].get("running"), what="a run of the sweep to start")
    finally:
        server.stop()  # the workers it started are killed: their runs come back interrupted
    server = start_server(runs_dir, GANBOARD_MAX_CONCURRENT="2")
    try:
        again = _sweep(server, sweep["id"])
        assert [run["id"] for run in again["runs"]] == ids and again["spec"]["axes"] == sweep["spec"]["axes"]
        assert server.client.delete(f"/api/sweeps/{sweep['id']}").status_code == 409  # queued runs left
        server.client.post(f"/api/sweeps/{sweep['id']}/resume").raise_for_status()
        done = wait_for(lambda: (s := _sweep(server, sweep["id"]))["status"] == "finished" and s, 300, what="the sweep")
        assert done["counts"] == {"completed": 4}, done["counts"]
        for run in done["runs"]:
            assert run["best_swd"] is not None and len(run["scores"]) == 3
            _metrics_once(server, server.run(run["id"]))
        assert done["best"]["best_swd"] == min(run["best_swd"] for run in done["runs"])
        measured = server.client.post("/api/sweeps/plan", json=spec).json()  # from the speed of the runs just done
        assert measured["measured_runs"] == 4 and measured["seconds"] > 0
        listed = server.client.get("/api/sweeps").json()
        assert [s["id"] for s in listed] == [sweep["id"]] and listed[0]["runs"] is None
        assert server.client.get(f"/sweeps/{sweep['id']}").status_code == 200
        assert server.client.delete(f"/api/sweeps/{sweep['id']}").status_code == 204
        assert server.client.get(f"/api/sweeps/{sweep['id']}").status_code == 404
        assert all(server.client.get(f"/api/runs/{i}").status_code == 404 for i in ids)
        assert not any((runs_dir / str(i)).exists() for i in ids)
    finally:
        server.stop()


def test_cancel_stops_every_run_and_bad_specs_name_the_axis(server):
    spec = {"base": {**TINY, "epochs": 50}, "axes": {"g_every": {"values": [1, 2, 3]}}}
    sweep = server.client.post("/api/sweeps", json=spec).json()
    cancelled = server.client.post(f"/api/sweeps/{sweep['id']}/cancel").json()
    assert cancelled["stopped"] is True
    done = wait_for(lambda: (s := _sweep(server, sweep["id"]))["status"] == "cancelled" and s, 120, what="the cancel")
    assert set(done["counts"]) == {"cancelled"}
    assert server.client.delete(f"/api/sweeps/{sweep['id']}").status_code == 204

    def error(spec: dict) -> tuple[int, list]:
        r = server.client.post("/api/sweeps", json=spec)
        return r.status_code, r.json()["detail"][0]["loc"]

    assert error({"base": TINY, "axes": {"lr_d": {"values": [5.0]}}}) == (422, ["body", "axes", "lr_d"])
    assert error({"base": TINY, "axes": {"lr": {"values": [1e-3]}}}) == (422, ["body", "axes", "lr"])
    assert error({"base": {**TINY, "ngf": 1}, "axes": {}}) == (422, ["body", "base", "ngf"])
    assert error({"base": TINY, "axes": {"lr_d": {"min": 1e-4}}})[0] == 422
    folder = {**TINY, "dataset": "folder"}  # a path outside the data roots, in the base or on an axis
    assert error({"base": {**folder, "data_path": "/etc"}, "axes": {}}) == (422, ["body", "base", "data_path"])
    assert error({"base": folder, "axes": {"data_path": {"values": ["/etc"]}}}) == (422, ["body", "axes", "data_path"])
    assert error({"base": TINY, "method": "optuna", "axes": {"lr_d": {"values": [1e-3]}}}) == (422, ["body", "trials"])
    assert server.client.get("/api/sweeps/999").status_code == 404
    assert server.client.post("/api/sweeps/999/cancel").status_code == 404
