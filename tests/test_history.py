"""The bucketed history (app/storage/history.py) on a real SQLite file and a PostgreSQL database, against the same buckets
worked out in Python."""

from __future__ import annotations

import math

import pytest

from sqlalchemy import delete, func, insert, select, update

from app.storage import history
from app.storage.db import Metric, Run, make_engine, make_sessionmaker, metric_buckets
from tests.browser.runs_in_db import row, write_run
from tests.conftest import database
from tests.databases import KINDS
from trainer.protocol import ROW_COLUMNS, STATS


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


@pytest.fixture(scope="module", params=KINDS)
def db(request, tmp_path_factory):
    with database(request, tmp_path_factory.mktemp("history")) as url:
        run_id = write_run(url, 5_003, total_steps=10_000, spike={1234: 99.0})
        engine = make_engine(url)
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


def test_a_run_of_up_to_max_buckets_steps_is_raw(db_url):
    run_id = write_run(db_url, 50)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        b = history.buckets(s, s.get(Run, run_id))
    engine.dispose()
    assert b["width"] == 1 and b["step"] == list(range(1, 51)) and set(b["rows"]) == {1}
    assert b["loss_g"]["mean"][4] is None and b["loss_g"]["count"][4] == 0  # step 5: G did not step
    assert b["d_x"]["mean"] == b["d_x"]["min"] == b["d_x"]["max"] == [row(s)["d_x"] for s in range(1, 51)]


def aggregated(s, run) -> dict:
    """The buckets worked out from the rows alone, with nothing stored."""
    s.execute(delete(metric_buckets).where(metric_buckets.c.run_id == run.id))
    return history.buckets(s, run)


def test_stored_buckets_read_as_the_rows_aggregated(db_url):
    run_id = write_run(db_url, 5_003, total_steps=10_000)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        run = s.get(Run, run_id)
        assert s.scalar(select(func.count()).select_from(metric_buckets)) == 626  # ceil(5,003 / 8)
        stored = history.buckets(s, run)
        s.execute(update(metric_buckets).where(metric_buckets.c.bucket == 3).values(loss_d_max=77.0))
        assert max(history.buckets(s, run)["loss_d"]["max"]) == 77.0  # it is the store that is read
        s.rollback()
        assert stored == aggregated(s, run)
    engine.dispose()


def test_rows_after_the_last_refresh_are_read_from_the_rows(db_url):
    run_id = write_run(db_url, 1_000, total_steps=10_000)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        run = s.get(Run, run_id)
        s.execute(insert(Metric), [{c: r[c] for c in ROW_COLUMNS} | {"run_id": run_id} for r in map(row, range(1_001, 1_100))])
        run.step = 1_099
        b = history.buckets(s, run)
        assert b["step"][-1] == 1_099 and sum(b["rows"]) == 1_099
        history.refresh(s, run)
        assert history.buckets(s, run) == b == aggregated(s, run)
    engine.dispose()


def test_a_resumed_attempt_replaces_the_rows_it_rewrote_and_a_new_plan_rebuckets(db_url):
    """A resume deletes the rows after its checkpoint and logs them again with other values: no bucket keeps the old
    ones. A changed plan (more epochs) makes buckets of another width."""
    run_id = write_run(db_url, 3_000, total_steps=4_000)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        run = s.get(Run, run_id)
        s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > 2_500))
        history.forget(s, run_id, 2_500)
        again = [row(step) | {"loss_d": 5.0} for step in range(2_501, 3_001)]
        s.execute(insert(Metric), [{c: r[c] for c in ROW_COLUMNS} | {"run_id": run_id} for r in again])
        history.refresh(s, run)
        b = history.buckets(s, run)
        assert b == aggregated(s, run) and b["width"] == 2
        assert b["loss_d"]["mean"][-250:] == [5.0] * 250 and sum(b["rows"]) == 3_000
        history.refresh(s, run)
        run.total_steps = 40_000
        history.refresh(s, run)
        assert set(s.scalars(select(metric_buckets.c.width))) == {32}
        assert history.buckets(s, run) == aggregated(s, run)
    engine.dispose()


@pytest.mark.parametrize(("first", "last", "due"), [(1, 255, False), (1, 256, True), (256, 256, True), (257, 511, False), (500, 600, True)])
def test_ingest_refreshes_when_rows_reach_a_multiple_of_refresh_every(first, last, due):
    assert history.REFRESH_EVERY == 256 and history.reaches_multiple(first, last, history.REFRESH_EVERY) is due
