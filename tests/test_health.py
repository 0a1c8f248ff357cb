"""Health alerts (app/storage/health.py, docs/health.md): the rules on synthetic rows, raising and clearing through ingest on a
real SQLite file and a PostgreSQL database, and the alerts real training provokes: D winning with a huge lr_d, and a
non-finite loss from NaN weights (the run stops there, stores nothing non-finite and writes no checkpoint of the broken
state)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from app.storage import health
from app.storage.db import Run, make_engine, make_sessionmaker
from app.storage.ingest import ingest
from tests.conftest import TINY
from tests.test_trainer import ListSink
from trainer.config import TrainConfig
from trainer.loop import NonFinite, train
from trainer.models import build_generator
from trainer.protocol import ROW_COLUMNS, STATS, BatchMessage, EpochMessage

# -- the rules on synthetic rows --------------------------------------------------------------------------------------


def test_d_wins_needs_a_full_window_of_saturated_outputs():
    assert health.d_wins([0.99] * 200, [0.01] * 200)
    assert not health.d_wins([0.99] * 199, [0.01] * 199)  # not sustained long enough yet
    assert not health.d_wins([0.99] * 200, [0.2] * 200)  # G still fools D sometimes
    assert not health.d_wins([0.8] * 200, [0.01] * 200)


def noisy_losses(n: int, spike_every: int | None = None, seed: int = 0) -> tuple[list[int], list[float | None]]:
    rng = random.Random(seed)
    steps = list(range(1, n + 1))
    values = [1.0 + 0.3 * rng.random() for _ in steps]
    for s in steps:
        if spike_every and s >= spike_every and s % spike_every < 3:  # a spike three steps wide
            values[s - 1] = 6.0
    return steps, values


def test_oscillation_is_regular_spikes():
    steps, values = noisy_losses(1000, spike_every=150)
    assert health.spikes(steps, values) == [150, 300, 450, 600, 750, 900]  # three-step-wide spikes count once
    assert "about every 150 steps" in health.oscillation(steps, values)
    assert health.oscillation(*noisy_losses(1000)) is None  # noise alone
    steps, values = noisy_losses(1000)
    for s in (100, 180, 900):  # three spikes, far from evenly spaced
        values[s - 1] = 6.0
    assert health.oscillation(steps, values) is None
    values[499] = 6.0  # 100, 180, 500, 900: still irregular
    assert health.oscillation(steps, values) is None
    tiny = [1e-4 * (1 + (s % 100 == 0) * 9) for s in steps]  # D has won: loss_d near 0, blips 10x of nothing
    assert health.spikes(steps, tiny) == []


def test_mode_collapse_is_diversity_that_fell_for_two_epochs():
    assert health.mode_collapse([0.9, 0.2, 0.1])
    assert not health.mode_collapse([0.9, 0.1])  # one epoch is not enough
    assert not health.mode_collapse([0.9, 0.2, 0.5])  # recovered
    assert not health.mode_collapse([0.9, 0.8, 0.7])
    assert not health.mode_collapse([0.03, 0.04, 0.05])  # never diverse yet: an untrained G scores ~0.03


# -- raised and cleared through ingest --------------------------------------------------------------------------------


@pytest.fixture
def stored(db_url, tmp_path):
    """A running run in a real database, and a function storing one worker message in its own transaction."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        run = Run(name="r", status="running", config=TrainConfig(**TINY).model_dump(), attempt=1)
        s.add(run)
    (tmp_path / "samples").mkdir()
    seq = iter(range(1, 10**6))

    def store(msg_type, **payload) -> tuple[list[dict], dict]:
        msg = msg_type(seq=next(seq), attempt=1, **payload)
        with sessions.begin() as s:
            current = s.get(Run, run.id)
            out = ingest(s, current, tmp_path, msg)
        return [m["alert"] for m in out if m["type"] == "alert"], out[-1]["run"]

    yield store
    engine.dispose()


def batch(first: int, last: int, **values) -> dict:
    steps = range(first, last + 1)
    row = {name: 0.5 for name in STATS} | values
    return {"rows": {c: [s if c == "step" else 1 if c == "epoch" else s if c == "batch" else float(s) if c == "time"
                         else row[c] for s in steps] for c in ROW_COLUMNS}}  # fmt: skip


def test_one_open_alert_per_kind_cleared_then_raised_again(stored):
    alerts, run = stored(BatchMessage, **batch(1, 199, d_x=0.99, d_g_z=0.01))
    assert alerts == [] and run["alerts"] == []  # 199 steps: not sustained yet
    alerts, run = stored(BatchMessage, **batch(200, 250, d_x=0.99, d_g_z=0.01))
    assert [a["kind"] for a in alerts] == ["d_wins"] and alerts[0]["step"] == 250
    assert "G gets little gradient" in alerts[0]["message"] and "lr_d" in alerts[0]["advice"]
    alerts, run = stored(BatchMessage, **batch(251, 300, d_x=0.99, d_g_z=0.01))
    assert alerts == [] and len(run["alerts"]) == 1  # still open: not raised twice
    alerts, run = stored(BatchMessage, **batch(301, 500, d_x=0.6, d_g_z=0.4))
    assert alerts == [] and run["alerts"][0]["cleared_step"] == 500
    alerts, run = stored(BatchMessage, **batch(501, 700, d_x=0.99, d_g_z=0.01))
    assert [a["kind"] for a in alerts] == ["d_wins"]
    assert [(a["step"], a["cleared_step"]) for a in run["alerts"]] == [(700, None), (250, 500)]  # newest first


def test_the_batch_rules_run_when_rows_reach_a_multiple_of_batch_every(stored):
    assert health.BATCH_EVERY == 50
    alerts, _ = stored(BatchMessage, **batch(1, 199, d_x=0.99, d_g_z=0.01))
    assert alerts == []  # checked (it reached 50, 100, 150), but not sustained for 200 steps yet
    alerts, _ = stored(BatchMessage, **batch(201, 249, d_x=0.99, d_g_z=0.01))
    assert alerts == []  # 248 rows of D winning, but 201..249 reach no multiple of 50: not checked
    alerts, _ = stored(BatchMessage, **batch(250, 250, d_x=0.99, d_g_z=0.01))
    assert [a["kind"] for a in alerts] == ["d_wins"] and alerts[0]["step"] == 250


def test_mode_collapse_from_the_epoch_messages(stored):
    epoch = dict(sample="epoch_0001.png", images_per_s=1.0, seconds=1.0)
    for e, diversity in enumerate([0.03, 0.9, 0.2], start=1):
        alerts, run = stored(EpochMessage, **{**epoch, "epoch": e, "step": 10 * e, "diversity": diversity})
        assert alerts == []
    alerts, run = stored(EpochMessage, **{**epoch, "epoch": 4, "step": 40, "diversity": 0.1})
    assert [a["kind"] for a in alerts] == ["mode_collapse"] and "from 0.90 to 0.20, 0.10" in alerts[0]["message"]
    alerts, run = stored(EpochMessage, **{**epoch, "epoch": 5, "step": 50, "diversity": 0.6})
    assert alerts == [] and run["alerts"][0]["cleared_step"] == 50


# -- provoked by real training ----------------------------------------------------------------------------------------


def test_a_huge_lr_d_makes_d_win_on_a_real_server(server):
    """lr_d = 0.02 (100x the article's) with G stepping on every tenth batch: D saturates within ~50 steps (D(x) 0.999,
    D(G(z)) 0.001 over the last 200 of 250 steps, here)."""
    run = server.create(seed=3, epochs=100, max_steps=250, batch_size=64, lr_d=0.02, g_every=10)
    done = server.wait_status(run["id"], "completed", "failed", timeout=600)  # minutes when the 2 cores are shared
    assert done["status"] == "completed", done["error"]
    assert [a["kind"] for a in done["alerts"]] == ["d_wins"] and done["alerts"][0]["cleared_step"] is None
    rows = server.client.get(f"/api/runs/{run['id']}/metrics").json()
    grad_g = [v for v in rows["grad_g"] if v is not None]  # where G stepped, as loss_g
    assert len(grad_g) == len([v for v in rows["loss_g"] if v is not None]) > 20 and all(v > 0 for v in grad_g)
    assert len(rows["grad_d"]) == 250 and all(v is not None and v > 0 for v in rows["grad_d"])


def write_nan_generator(path) -> str:
    netg = build_generator(TrainConfig(**TINY)).state_dict()
    torch.save({k: v.float().fill_(math.nan) if v.is_floating_point() else v for k, v in netg.items()}, path)
    return str(path)


def test_nan_weights_fail_the_run_with_an_alert_on_a_real_server(server):
    run = server.create(seed=3, netg_init=write_nan_generator(server.runs_dir.parent / "nan_netg.pth"))
    done = server.wait_status(run["id"], "failed", "completed")
    assert done["error"].startswith("non-finite loss_d at step 1")
    assert [a["kind"] for a in done["alerts"]] == ["non_finite"]
    assert server.client.get(f"/api/runs/{run['id']}/metrics").json()["step"] == []  # nothing non-finite stored


def test_nan_weights_stop_the_run_at_the_first_step_and_store_nothing_non_finite(tmp_path):
    cfg = TrainConfig(**TINY, seed=3, netg_init=write_nan_generator(tmp_path / "nan.pth"))
    sink = ListSink()
    with pytest.raises(NonFinite):
        train(cfg, tmp_path / "run", sink)
    status, info = sink.statuses[-1]
    assert status == "failed" and info["error"] == "non-finite loss_d at step 1"  # D's step sees G's NaN fakes first
    assert sink.rows.get("step", []) == []  # the broken row was dropped, not sent
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
