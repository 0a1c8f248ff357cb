"""Organising runs in Chromium: rename, tags and note on the run page; archive; delete behind a confirmation; the run
list's search, sort and table view kept in the URL; dark mode; the shortcut overlay and keys; the log-scale loss chart;
the Start button on a first visit."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.runs_in_db import write_run
from tests.conftest import start_server


@pytest.fixture
def stored(server):
    """A finished run of 500 batches, written straight into the server's database."""
    return write_run(server.runs_dir, 500)


def row_ids(page, table="#runs-table") -> list[int]:
    return [int(i) for i in page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.map(r => r.dataset.runId)")]


def test_rename_tags_and_note_persist_across_a_reload(server, stored, page):
    page.goto(f"{server.url}/runs/{stored}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    page.click("#edit-button")
    page.fill("#edit-name", "lr 2e-4, bf16")
    page.fill("#edit-tags", "sweep, bf16 , sweep")
    page.fill("#edit-note", "D wins from epoch 3.\nTry g_every 2.")
    page.click("#edit-save")
    page.wait_for_selector("#edit-dialog:not([open])", state="attached")
    page.reload()
    page.wait_for_selector("#run-tags .tag")
    assert page.text_content("#run-name") == "lr 2e-4, bf16"
    assert page.eval_on_selector_all("#run-tags .tag", "ts => ts.map(t => t.textContent)") == ["sweep", "bf16"]
    assert page.text_content("#run-note") == "D wins from epoch 3.\nTry g_every 2."
    run = server.run(stored)
    assert (run["name"], run["tags"], run["status"]) == ("lr 2e-4, bf16", ["sweep", "bf16"], "completed")

    page.click("#edit-button")  # a bad tag: the server's reason beside the field, nothing stored
    page.fill("#edit-tags", "x" * 40)
    page.click("#edit-save")
    error = page.locator('#edit-form .field-error[data-field="tags"]')
    error.wait_for()
    assert "32" in error.text_content()
    assert server.run(stored)["tags"] == ["sweep", "bf16"]


def test_archive_hides_a_run_and_the_filter_shows_it(server, stored, page):
    page.goto(f"{server.url}/runs/{stored}")
    page.wait_for_selector("#status.completed")
    page.click("#archive-button")
    page.wait_for_selector("#archive-button:text-is('Unarchive')")
    assert server.run(stored)["archived"] is True
    page.goto(server.url + "/")
    page.wait_for_selector("#runs-table tbody tr")
    assert stored not in row_ids(page)
    page.select_option("#filter-archived", "only")
    page.wait_for_selector(f'#runs-table tr[data-run-id="{stored}"] .tag.archived')
    assert row_ids(page) == [r["id"] for r in server.client.get("/api/runs?archived=true").json()]
    assert parse_qs(urlparse(page.url).query)["archived"] == ["only"]
    page.goto(f"{server.url}/runs/{stored}")
    page.click("#archive-button:text-is('Unarchive')")
    page.wait_for_selector("#archive-button:text-is('Archive')")
    assert server.run(stored)["archived"] is False


def test_delete_asks_first_and_a_running_run_says_why_not(server, stored, page):
    page.goto(f"{server.url}/runs/{stored}")
    page.wait_for_selector("#status.completed")
    page.click("#delete-button")
    page.click("#delete-cancel")  # kept
    assert server.client.get(f"/api/runs/{stored}").status_code == 200
    page.click("#delete-button")
    page.click("#delete-confirm")
    page.wait_for_url(server.url + "/")
    assert server.client.get(f"/api/runs/{stored}").status_code == 404

    running = server.create(epochs=1000)
    try:
        page.goto(f"{server.url}/runs/{running['id']}")
        page.wait_for_selector("#status.running, #status.queued")
        page.click("#delete-button")
        page.click("#delete-confirm")
        error = page.locator("#delete-error")
        error.wait_for()
        assert "cancel it before deleting it" in error.text_content()
        assert server.client.get(f"/api/runs/{running['id']}").status_code == 200
    finally:
        server.client.post(f"/api/runs/{running['id']}/cancel")


def test_search_and_sort_live_in_the_url(server, page):
    ids = [write_run(server.runs_dir, n) for n in (30, 20, 10)]
    server.client.patch(f"/api/runs/{ids[0]}", json={"name": "needle b", "note": "x"})
    server.client.patch(f"/api/runs/{ids[1]}", json={"name": "hay", "note": "a NEEDLE in the note"})
    server.client.patch(f"/api/runs/{ids[2]}", json={"name": "needle a", "tags": ["t"]})
    page.goto(server.url + "/")
    page.wait_for_selector("#runs-table tbody tr")
    page.press("body", "/")  # the shortcut focuses the search box
    assert page.evaluate("document.activeElement.id") == "run-search"
    page.keyboard.type("needle")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 3")
    page.click("#runs-table th[data-sort=name] button")
    assert row_ids(page) == [ids[1], ids[2], ids[0]]  # hay, needle a, needle b
    query = parse_qs(urlparse(page.url).query)
    assert (query["q"], query["sort"], query["dir"]) == (["needle"], ["name"], ["asc"])
    page.reload()
    page.wait_for_selector("#runs-table tbody tr")
    assert page.input_value("#run-search") == "needle"
    assert row_ids(page) == [ids[1], ids[2], ids[0]]
    assert page.get_attribute("#runs-table th[data-sort=name]", "aria-sort") == "ascending"


def test_the_table_view_sorts_by_a_config_column(server, page):
    made = []
    for lr in (3e-4, 1e-4, 2e-4):
        run = server.create(epochs=1000, lr_g=lr)
        server.client.post(f"/api/runs/{run['id']}/cancel")
        server.client.patch(f"/api/runs/{run['id']}", json={"tags": ["lr-sweep"]})
        made.append(run["id"])
    for run_id in made:
        server.wait_status(run_id, "cancelled")
    page.goto(server.url + "/?tag=lr-sweep")
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#view-toggle button[data-view=table]")
    page.click("#compare-table th[data-sort=lr_g] button")
    page.wait_for_function("document.querySelector('#compare-table th[data-sort=lr_g]').ariaSort === 'descending'")
    assert row_ids(page, "#compare-table") == [made[0], made[2], made[1]]
    assert page.eval_on_selector_all("#compare-table td.col-lr_g", "cs => cs.map(c => c.textContent)") == ["3.0e-4", "2.0e-4", "1.0e-4"]
    page.click("#compare-table th[data-sort=lr_g] button")
    assert row_ids(page, "#compare-table") == [made[1], made[2], made[0]]
    page.reload()  # view, tag and sort come back from the URL
    page.wait_for_selector("#compare-table tbody tr")
    assert row_ids(page, "#compare-table") == [made[1], made[2], made[0]]
    assert page.is_hidden("#runs-table")


BACKGROUND = "getComputedStyle(document.documentElement).backgroundColor"


def test_dark_mode_follows_the_system_and_the_toggle_persists(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        light = page.evaluate(BACKGROUND)
        page.click("#theme-toggle")
        dark = page.evaluate(BACKGROUND)
        assert dark != light and page.get_attribute("html", "data-theme") == "dark"
        page.reload()
        assert page.evaluate(BACKGROUND) == dark  # kept in localStorage
        page.click("#theme-toggle")
        assert page.evaluate(BACKGROUND) == light
    finally:
        context.close()
    context = browser.new_context(color_scheme="dark")  # a first visit with a dark system theme
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        assert page.evaluate(BACKGROUND) == dark
    finally:
        context.close()


def test_shortcuts_overlay_keys_and_log_scale(server, stored, page):
    page.goto(f"{server.url}/runs/{stored}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    page.keyboard.press("?")
    overlay = page.locator("#shortcuts")
    overlay.wait_for()
    for text in ("previous sample grid", "smoothing", "go to the run list"):
        assert text in overlay.text_content()
    page.keyboard.press("Escape")
    overlay.wait_for(state="hidden")

    page.keyboard.press("s")
    assert page.input_value("#smoothing") == "0" and page.input_value("#smoothing-d") == "0"
    page.keyboard.press("s")
    assert page.input_value("#smoothing") == "0.6"

    page.check("#log-y")
    assert page.evaluate("window.ganboard.charts.loss.scales.y.distr") == 3
    assert page.evaluate("window.ganboard.charts.loss.scales.y.min") > 0
    page.uncheck("#log-y")
    assert page.evaluate("window.ganboard.charts.loss.scales.y.distr") == 1

    page.keyboard.press("g")
    page.keyboard.press("l")
    page.wait_for_url(server.url + "/")


def test_the_start_button_shows_without_scrolling_on_a_first_visit(tmp_path, browser):
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(srv.url + "/")
        page.wait_for_selector("#field-dataset")
        box = page.locator("#start-button").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 800, box
        page.close()
    finally:
        srv.stop()
