"""The bucketed history (app/history.py) on a real SQLite file, against the same buckets worked out in Python."""

from __future__ import annotations

import math

import pytest

from app import history
from app.db import Run, make_engine, make_sessionmaker
from tests.browser.runs_in_db import row, write_run
from trainer.protocol import STATS


@pytest.mark.parametrize(("total", "width"), [(1, 1), (2000, 1), (2001, 2), (16_000, 8), (200_000, 128), (10**9, 2**19)])
def test_the_bucket_width_is_the_smallest_power_of_two_that_fits(total, width):
    assert history.bucket_width(total, 0) == width
    assert math.ceil(total / width) <= history.MAX_BUCKETS
    assert width == 1 or math.ceil(total / (width // 2)) > history.MAX_BUCKETS
    assert history.bucket_width(None, total) == width  # no plan: the last step decides


def expected(rows: list[dict], width: int) -> dict[int, list[dict]]:
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["step"] - 1) // width, []).append(r)
    return groups


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    runs = tmp_path_factory.mktemp("history")
    run_id = write_run(runs, 5_003, total_steps=10_000, spike={1234: 99.0})
    engine = make_engine(f"sqlite:///{runs / 'ganboard.db'}")
    yield make_sessionmaker(engine), run_id
    engine.dispose()


def test_buckets_hold_each_series_mean_min_max_and_count(db):
    sessions, run_id = db
    with sessions() as s:
        b = history.buckets(s, s.get(Run, run_id))
    assert b["width"] == 8 and b["total_steps"] == 10_000  # 10,000 planned steps: buckets of 8
    rows = [row(step) for step in range(1, 5_004)]
    rows[1233]["loss_d"] = 99.0
    groups = expected(rows, 8)
    assert b["step"] == [g[-1]["step"] for g in groups.values()]  # the last step of each bucket; the last one partial
    assert b["rows"] == [len(g) for g in groups.values()] and b["rows"][-1] == 5_003 % 8
    for name in STATS:
        for i, g in enumerate(groups.values()):
            values = [r[name] for r in g if r[name] is not None]
            assert b[name]["count"][i] == len(values)
            assert b[name]["min"][i] == min(values) and b[name]["max"][i] == max(values)
            assert b[name]["mean"][i] == pytest.approx(sum(values) / len(values), rel=1e-12, abs=1e-12)
    assert max(b["loss_d"]["max"]) == 99.0  # the spike survives in the envelope


def test_after_a_step_only_the_rest_of_its_bucket_and_later_ones(db):
    sessions, run_id = db
    with sessions() as s:
        b = history.buckets(s, s.get(Run, run_id), after=4_996)
    assert b["step"] == [5_000, 5_003] and b["rows"] == [4, 3]  # steps 4997-5000 end bucket 624, 5001-5003 start 625


def test_a_run_of_up_to_max_buckets_steps_is_raw(tmp_path):
    run_id = write_run(tmp_path, 50)
    engine = make_engine(f"sqlite:///{tmp_path / 'ganboard.db'}")
    with make_sessionmaker(engine)() as s:
        b = history.buckets(s, s.get(Run, run_id))
    engine.dispose()
    assert b["width"] == 1 and b["step"] == list(range(1, 51)) and set(b["rows"]) == {1}
    assert b["loss_g"]["mean"][4] is None and b["loss_g"]["count"][4] == 0  # step 5: G did not step
    assert b["d_x"]["mean"] == b["d_x"]["min"] == b["d_x"]["max"] == [row(s)["d_x"] for s in range(1, 51)]
