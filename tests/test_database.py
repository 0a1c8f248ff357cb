"""The database itself (app/storage/db.py) on each engine it runs on: a SQLite file and a PostgreSQL database (tests/databases.py).
An older schema gains what was added since, run ids are never given twice, a database server that drops the server's
connections (a restart, a failover) costs no request and no row, and a database URL that cannot work stops `ganboard
serve` with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.settings import Settings
from app.storage.db import Checkpoint, Run, make_engine, make_sessionmaker
from app.web import export
from tests.browser.runs_in_db import write_run
from trainer.protocol import ROW_COLUMNS, SYSTEM_FIELDS
from tests.harness import free_port, start_server, wait_for


def test_an_older_database_gains_the_columns_added_since(db_url):
    """Columns that a newer GANboard added: nullable ones come back empty, ones with a default (a boolean, a float)
    hold it in the rows already there."""
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        s.add(run := Run(name="old", status="completed", config={}))
        s.flush()
        s.add(Checkpoint(run_id=run.id, name="netg.pth", size=7, epoch=1))
    with engine.begin() as conn:  # the tables as an older GANboard made them
        for table, column in [("runs", "archived"), ("runs", "tags"), ("runs", "ran_seconds"), ("checkpoints", "sha256")]:
            conn.execute(text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))
    engine.dispose()

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        old = s.scalars(select(Run)).one()
        assert (old.name, old.archived, old.tags, old.ran_seconds) == ("old", False, None, 0.0)
        assert s.scalars(select(Checkpoint.sha256)).all() == [None]
        s.add(Run(name="new", config={}))
        s.commit()
    engine.dispose()
    make_engine(db_url).dispose()  # opening it again changes nothing


def test_the_metric_and_system_columns_are_the_protocols(db_url):
    """db.Metric's columns are generated from protocol.METRICS, in the stats vector's order, and db.SystemSample's from
    protocol.SystemMessage; a database made before a metric was added gains its column (null in the rows already
    there)."""
    def columns(engine, table: str = "metrics") -> list[str]:
        return [c["name"] for c in inspect(engine).get_columns(table)]

    engine = make_engine(db_url)
    assert columns(engine) == ["run_id", *ROW_COLUMNS]
    assert columns(engine, "system_samples") == ["id", "run_id", "attempt", *SYSTEM_FIELDS]
    with engine.begin() as conn:
        conn.execute(text('ALTER TABLE "metrics" DROP COLUMN "grad_g"'))
    engine.dispose()
    engine = make_engine(db_url)
    assert sorted(columns(engine)) == sorted(["run_id", *ROW_COLUMNS])
    engine.dispose()


def test_run_ids_are_never_given_twice(db_url):
    """SQLite: AUTOINCREMENT (app.storage.db migrates an older table to it); PostgreSQL: the id's sequence never goes back."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        s.add_all([Run(name="a", config={}), Run(name="b", config={})])
    with sessions.begin() as s:
        s.delete(s.scalars(select(Run).where(Run.name == "b")).one())
    with sessions.begin() as s:
        s.add(run := Run(name="c", config={}))
        s.flush()
        assert run.id == 3
    engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_connections_the_database_server_dropped_cost_no_request(db_url):
    """PostgreSQL restarted, failed over, or a proxy closed idle connections: every pooled connection is dead. The
    engine checks one before handing it out (pool_pre_ping), so the next request gets a live one instead of an error."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        s.add(Run(name="a", config={}))
    for _ in range(3):
        with sessions() as s:  # the same pooled connection each time
            assert s.scalar(select(Run.name)) == "a"
        assert drop_connections(db_url) >= 1  # every connection the engine pooled
    engine.dispose()


def drop_connections(db_url: str) -> int:
    """End every connection to this PostgreSQL database but ours, as a restart of the database server does."""
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        ended = conn.scalar(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": make_url(db_url).database})  # fmt: skip
    engine.dispose()
    return ended


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_run_trains_to_the_end_while_postgresql_drops_the_servers_connections(tmp_path, db_url):
    """What the SQLite file guard is to a deleted file (test_journal.py), reconnecting is to PostgreSQL: its connections
    dropped three times mid-run, the API still answers, and the run completes with every step stored once (a message
    that met a dropped connection is stored from the journal when the worker reconnects)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    server = start_server(runs, database_url=db_url)
    try:
        run_id = server.create(epochs=1000, max_steps=48, eval_every=1000)["id"]  # no FID: seconds, not minutes
        for _ in range(3):
            step = wait_for(lambda: server.run(run_id)["step"], what="training")
            assert drop_connections(db_url) >= 1
            wait_for(lambda: server.run(run_id)["step"] > step or server.run(run_id)["status"] != "running", 600, what="more steps")
        done = server.wait_status(run_id, "completed", "failed", timeout=600)
        assert done["status"] == "completed", done["error"]
        steps = server.client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 10**6}).json()["step"]
        assert steps == list(range(1, done["total_steps"] + 1))
    finally:
        server.stop()


@pytest.mark.parametrize(("url", "driver"), [("postgresql://u:p@db.lab:5432/ganboard", "postgresql+psycopg"),
                                             ("postgres://u:p@db.lab/ganboard", "postgresql+psycopg"),
                                             ("postgresql+psycopg://u:p@db.lab/ganboard", "postgresql+psycopg"),
                                             ("sqlite:////srv/ganboard.db", "sqlite")])  # fmt: skip
def test_a_plain_postgresql_url_means_psycopg_3(url, driver):
    assert make_url(Settings(database_url=url).database_url).drivername == driver


def test_a_database_url_that_does_not_parse_stops_serve_naming_the_setting(tmp_path):
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--runs-dir", str(tmp_path), "--database-url",
                           "db.lab:5432 user=ganboard password=hunter2"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "database_url" in done.stderr and "not a database URL" in done.stderr and "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr  # a URL may hold a password: never echoed


def test_a_database_that_cannot_be_opened_stops_serve_with_the_reason(tmp_path):
    url = f"postgresql://ganboard:hunter2@127.0.0.1:{free_port()}/ganboard"  # nobody listens there
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--runs-dir", str(tmp_path), "--database-url", url],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert "database_url: cannot open postgresql+psycopg://ganboard:***@127.0.0.1" in done.stderr
    assert "refused" in done.stderr


def test_an_export_streams_every_row_in_chunks(db_url):
    """On PostgreSQL `yield_per` reads through a server-side cursor, a path SQLite never takes."""
    run_id = write_run(db_url, export.CHUNK * 2 + 7)
    engine = make_engine(db_url)
    chunks = list(export._rows(make_sessionmaker(engine), run_id))
    engine.dispose()
    assert [len(c) for c in chunks] == [export.CHUNK, export.CHUNK, 7]
    assert [row[0] for c in chunks for row in c] == list(range(1, export.CHUNK * 2 + 8))
