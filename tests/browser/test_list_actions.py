"""The run list in Chromium: archive, tag, export and delete the ticked runs together; a long unbroken name stays in its
column; the quality scores sort best first and are in the sort menu; `==` in the config filter."""

from __future__ import annotations

import csv
import io
import sqlite3

from tests.browser.runs_in_db import write_run
from tests.browser.test_organise_page import row_ids


def set_fields(server, run_id: int, **fields) -> None:
    with sqlite3.connect(server.runs_dir / "ganboard.db") as db:
        db.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", [*fields.values(), run_id])


def test_archive_tag_export_and_delete_the_ticked_runs(server, page):
    ids = [write_run(server.runs_dir, 20) for _ in range(3)]
    keep = write_run(server.runs_dir, 20)
    page.goto(server.url + "/")
    page.wait_for_selector(f"tr[data-run-id='{keep}']")
    assert page.is_hidden("#bulk-actions")  # nothing ticked
    for run_id in ids:
        page.check(f"#runs-table input.pick-run[data-run-id='{run_id}']")
    assert page.text_content("#bulk-count") == "3 ticked:"

    page.fill("#bulk-tag", "failed-test")
    page.click("#bulk-tag-button")
    page.wait_for_function("document.getElementById('bulk-status').textContent.includes('3 of 3')")
    assert all(server.run(i)["tags"] == ["failed-test"] for i in ids) and server.run(keep)["tags"] == []

    with page.expect_download() as download:
        page.click("#bulk-export")
    rows = list(csv.DictReader(io.StringIO(open(download.value.path()).read())))
    assert [int(r["id"]) for r in rows] == sorted(ids, reverse=True)  # as the list shows them: newest first
    assert rows[0]["tags"] == "failed-test" and rows[0]["lr_d"] == "0.0002" and rows[0]["status"] == "completed"

    page.click("#bulk-archive")
    page.wait_for_function("document.getElementById('bulk-status').textContent.startsWith('archived 3 of 3')")
    assert all(server.run(i)["archived"] for i in ids) and row_ids(page) == [keep]  # archived runs leave the list

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-delete")
    page.wait_for_function("document.getElementById('bulk-status').textContent.startsWith('deleted 3 of 3')")
    assert [server.client.get(f"/api/runs/{i}").status_code for i in ids] == [404] * 3
    assert server.run(keep)["status"] == "completed" and page.is_hidden("#bulk-actions")


def test_a_running_run_is_not_deleted_and_the_list_says_why(server, page):
    running = write_run(server.runs_dir, 20)
    set_fields(server, running, status="running")
    page.goto(server.url + "/")
    page.check(f"#runs-table input.pick-run[data-run-id='{running}']")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-delete")
    page.wait_for_function("document.getElementById('bulk-status').textContent.startsWith('deleted 0 of 1')")
    assert "cancel it before deleting it" in page.text_content("#bulk-status")
    assert server.run(running)["status"] == "running"
    set_fields(server, running, status="completed")


def test_a_long_unbroken_name_wraps_inside_its_column(server, page):
    run_id = write_run(server.runs_dir, 20)
    server.client.patch(f"/api/runs/{run_id}", json={"name": "x" * 100})
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(server.url + "/")
        page.wait_for_selector(f"tr[data-run-id='{run_id}'] .run-link")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        box = page.locator(f"tr[data-run-id='{run_id}'] .run-link").bounding_box()
        assert box["x"] + box["width"] <= width


def test_best_scores_sort_best_first_from_the_menu_and_the_heading(server, page):
    runs = {write_run(server.runs_dir, 20): fid for fid in (80.0, 20.0, 50.0)}
    for run_id, fid in runs.items():
        set_fields(server, run_id, best_fid=fid, best_swd=fid / 10)
    best_first = sorted(runs, key=runs.get)
    page.goto(server.url + "/")
    page.wait_for_selector(f"tr[data-run-id='{best_first[0]}']")
    assert {"best_swd", "best_fid"} <= set(page.eval_on_selector_all("#run-sort option", "os => os.map(o => o.value)"))
    page.select_option("#run-sort", "best_fid")
    assert row_ids(page)[:3] == best_first and page.text_content("#sort-dir") == "↑ ascending"
    page.click("#view-toggle button[data-view=table]")
    page.click("#compare-table th[data-sort=best_swd] button")
    assert row_ids(page, "#compare-table")[:3] == best_first


def test_the_config_filter_takes_double_equals_and_says_what_it_cannot_read(server, page):
    run_id = write_run(server.runs_dir, 20)  # lr_d 0.0002, the default
    page.goto(server.url + "/")
    page.fill("#filter-config", "lr_d==0.0002")
    page.wait_for_selector(f"tr[data-run-id='{run_id}']")
    assert page.text_content("#filter-config-error") == ""
    page.fill("#filter-config", "lr_d=>0.1")
    page.wait_for_function("document.getElementById('filter-config-error').textContent.includes('lr_d=>0.1')")
