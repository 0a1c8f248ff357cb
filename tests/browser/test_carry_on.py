"""Carrying a run on from the run page, in Chromium: "Resume with changes…" on a stopped run (an error beside its
field, then the change recorded and listed under the Config), and "Train more epochs…" offered on a completed run."""

from __future__ import annotations

import sqlite3

from tests.browser.runs_in_db import write_run


def test_resume_with_changes_and_train_more_are_offered_and_recorded(server, page):
    run_id = write_run(server.runs_dir, 20)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_selector("#status.completed")
    assert page.is_visible("#extend-button") and page.is_hidden("#carry-button")
    page.click("#extend-button")
    page.fill("#carry-more", "5")
    page.click("#carry-submit")  # written straight into the database: it has no resume.pt to carry on from
    page.wait_for_selector("#carry-dialog .field-error[data-field=more]:has-text('resume.pt')")
    page.click("#carry-cancel")

    with sqlite3.connect(server.runs_dir / "ganboard.db") as db:
        db.execute("UPDATE runs SET status = 'cancelled' WHERE id = ?", [run_id])
    page.reload()
    page.wait_for_selector("#status.cancelled")
    assert page.is_visible("#carry-button") and page.is_hidden("#extend-button")
    page.click("#carry-button")
    assert page.input_value("#carry-lr_d") == "0.0002"
    page.fill("#carry-epochs", "0")
    page.click("#carry-submit")
    page.wait_for_selector("#carry-dialog .field-error[data-field=epochs]:not(:empty)")
    assert "greater than or equal to 1" in page.text_content("#carry-dialog .field-error[data-field=epochs]")
    page.fill("#carry-epochs", "70")
    page.fill("#carry-lr_d", "0.0001")
    page.click("#carry-submit")
    page.wait_for_selector("#carry-dialog:not([open])", state="attached")
    server.client.post(f"/api/runs/{run_id}/cancel")  # queued now; it need not train here
    run = server.run(run_id)
    assert run["config"]["lr_d"] == 0.0001 and run["changes"][0]["changed"] == {"lr_d": [0.0002, 0.0001]}
    page.wait_for_selector("#config-changes:not([hidden])")
    assert "lr_d 0.0002 → 0.0001" in page.text_content("#config-changes")


def test_the_charts_mark_where_later_attempts_began(server, page):
    run_id = write_run(server.runs_dir, 500)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    assert page.evaluate("window.ganboard.marks()")["events"] == []
    page.evaluate("(run) => window.ganboard.feed({type: 'run', run})",
                  {**server.run(run_id), "restarts": [{"attempt": 2, "step": 120}, {"attempt": 3, "step": 300}]})
    for chart in ("loss", "d", "grad"):  # no stops recorded (a run from before they were): resumed
        assert page.evaluate(f"window.ganboard.marks('{chart}')")["events"] == [["resumed", 120], ["resumed", 300]]
