"""The database itself (app/db.py) on each engine it runs on: a SQLite file and a PostgreSQL database (tests/databases.py).
An older schema gains what was added since, run ids are never given twice, and a database server that drops the
server's connections (a restart, a failover) costs no request."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.db import Checkpoint, Run, make_engine, make_sessionmaker


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


def test_run_ids_are_never_given_twice(db_url):
    """SQLite: AUTOINCREMENT (app.db migrates an older table to it); PostgreSQL: the id's sequence never goes back."""
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
        killer = create_engine(db_url, poolclass=NullPool)
        with killer.connect() as conn:
            ended = conn.scalar(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": make_url(db_url).database})  # fmt: skip
        killer.dispose()
        assert ended >= 1  # every connection the engine pooled
    engine.dispose()
