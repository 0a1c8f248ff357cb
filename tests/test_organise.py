"""Organising runs through the API on a real server: rename, tags, note, archive (PATCH), the list's filters, and the
422s and 404 of bad edits. Runs are cancelled while queued-or-running, so no training is needed."""

from __future__ import annotations

import sqlite3

import pytest

from app.storage.db import make_engine


@pytest.fixture(scope="module")
def runs(server):
    """Two stopped runs: one tagged and noted, one archived."""
    made = []
    for _ in range(2):
        run = server.create(epochs=1000)
        server.client.post(f"/api/runs/{run['id']}/cancel")
        made.append(server.wait_status(run["id"], "cancelled"))
    return made


def patch(server, run_id, **body):
    return server.client.patch(f"/api/runs/{run_id}", json=body)


def test_rename_tag_note_and_archive_persist(server, runs):
    a, b = runs
    r = patch(server, a["id"], name="  lr sweep 2e-4 ", tags=["sweep", " lr ", "sweep"], note="G wins after epoch 3")
    assert r.status_code == 200, r.text
    got = server.run(a["id"])
    assert (got["name"], got["tags"], got["note"], got["archived"]) == ("lr sweep 2e-4", ["sweep", "lr"], "G wins after epoch 3", False)
    assert got["status"] == "cancelled"  # an edit never touches the status
    assert patch(server, b["id"], archived=True).json()["archived"] is True
    assert patch(server, a["id"], note="").json()["note"] is None  # an empty note clears it
    assert server.run(a["id"])["tags"] == ["sweep", "lr"]  # fields not sent stay as they were


def test_the_list_filters_for_scripts(server, runs):
    a, b = runs
    patch(server, a["id"], name="filter-a", tags=["sweep"], note="the Blue one", archived=False)
    patch(server, b["id"], name="filter-b", tags=["baseline"], note=None, archived=True)
    ids = lambda **params: [r["id"] for r in server.client.get("/api/runs", params=params).json()]  # noqa: E731
    assert {a["id"], b["id"]} <= set(ids())  # no filter: every run, archived ones too
    assert b["id"] in ids(archived="true") and a["id"] not in ids(archived="true")
    assert a["id"] in ids(archived="false") and b["id"] not in ids(archived="false")
    assert a["id"] in ids(tag="sweep") and b["id"] not in ids(tag="sweep")
    assert a["id"] in ids(q="blue") and b["id"] not in ids(q="blue")  # the note, any case
    assert b["id"] in ids(q="BASELINE") and a["id"] not in ids(q="baseline")  # a tag
    assert b["id"] in ids(q="filter-b", status="cancelled") and not ids(q="filter-b", status="completed")
    assert server.client.get("/api/runs", params={"status": "done"}).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": None}, "name"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": ["x" * 33]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": "sweep"}, "tags"),
        ({"note": "n" * 10_001}, "note"),
        ({"archived": "maybe"}, "archived"),
        ({"status": "completed"}, "status"),  # the status is the supervisor's
    ],
)
def test_bad_edits_are_422_naming_the_field_and_change_nothing(server, runs, body, field):
    before = server.run(runs[0]["id"])
    r = patch(server, runs[0]["id"], **body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"][0]["loc"], r.json()
    assert server.run(runs[0]["id"]) == before


def test_editing_a_missing_run_is_404(server):
    r = patch(server, 10**9, name="ghost")
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_an_older_database_gains_the_new_columns(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR NOT NULL, status VARCHAR NOT NULL,"
                     " config JSON NOT NULL, created_at DATETIME NOT NULL)")
        conn.execute("INSERT INTO runs (name, status, config, created_at) VALUES ('old', 'completed', '{}', '2025-01-01')")
    make_engine(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT tags, note, archived FROM runs").fetchone() == (None, None, 0)
