"""Sweeps in real Chromium: the Sweep panel of the new-run form counts the runs, names a bad axis and starts a sweep
whose page goes live as its runs train; a stored 12-run sweep's page shows its table, seeds grouped, and its plots."""

from __future__ import annotations

from tests.browser.sweep_in_db import write_sweep
from tests.browser.test_pages import fill_tiny_form


def painted(page, selector: str) -> int:
    """Pixels a canvas has drawn (not transparent)."""
    return page.evaluate("""(sel) => { const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""", selector)


def test_stored_sweep_page_table_groups_and_plots(server, page):
    sweep_id, ids = write_sweep(server.runs_dir, [1e-4, 2e-4, 1e-3], [1, 2], seeds=2)
    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.wait_for_function("performance.getEntriesByName('first-sweep-paint').length > 0")
    rows = page.locator("#sweep-table tbody tr")
    assert rows.count() == 12
    assert page.locator("#sweep-status").inner_text() == "finished"
    assert "11 completed, 1 pruned" in page.locator("#sweep-summary").inner_text() or "1 pruned" in page.locator("#sweep-summary").inner_text()
    pruned = page.locator(f"#sweep-table tr[data-run-id='{ids[1]}']")
    assert "pruned" in pruned.inner_text()
    assert "median pruner" in pruned.locator("td").nth(1).get_attribute("title")
    best = page.locator("#sweep-table tr.best")
    assert best.count() == 1 and "2.0e-4" in best.inner_text() and best.locator("td").nth(3).inner_text() == "1"
    assert painted(page, "#parallel") > 1000 and painted(page, "#scatter") > 500
    assert page.locator("#curves .u-legend .u-series").count() == 1 + 5  # the best 5 runs
    assert page.locator("#sweep-compare").get_attribute("href").startswith("/compare?runs=")
    page.check("#group-seeds")
    assert rows.count() == 6
    legend = page.locator("#curves .u-legend .u-series")
    assert legend.count() == 1 + 5 * 3  # the best 5 settings, each its mean, min and max
    assert "lr_g+lr_d 2.0e-4, g_every 1" in legend.nth(1).inner_text()
    first = rows.first.locator("td")
    assert first.nth(0).inner_text() == "2.0e-4" and first.nth(1).inner_text() == "1" and first.nth(2).inner_text() == "2"
    page.select_option("#scatter-x", "g_every")
    assert painted(page, "#scatter") > 500
    assert page.locator("#sweep-cancel").is_hidden() and page.locator("#sweep-delete").is_visible()


def test_sweep_form_counts_names_a_bad_axis_and_starts_a_live_sweep(server, page):
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#presets .preset').length > 0")
    fill_tiny_form(page, epochs=2)
    page.click("#sweep-button")
    values = page.locator("#sweep-axes .sweep-values").first
    values.fill("1e-4..1e-2 x3")
    page.click("#sweep-add")
    page.locator("#sweep-axes .sweep-field").nth(1).select_option("g_every")
    page.locator("#sweep-axes .sweep-values").nth(1).fill("1, 2")
    page.fill("#sweep-seeds", "2")
    page.wait_for_function("document.getElementById('sweep-plan').textContent.startsWith('12 runs')")
    values.fill("0.5..5 x2")
    error = page.locator("#sweep-axes .sweep-axis").first.locator(".field-error")
    error.wait_for(state="visible")
    assert "lr_g" in error.inner_text() or "less than or equal to 1" in error.inner_text()
    assert page.locator("#sweep-start").is_disabled()
    values.fill("2e-4, 1e-3")
    page.locator("#sweep-axes .sweep-axis").nth(1).locator("button").click()  # only the learning rates now
    page.fill("#sweep-seeds", "1")
    page.wait_for_function("document.getElementById('sweep-plan').textContent.startsWith('2 runs')")
    page.click("#sweep-start")
    page.wait_for_url("**/sweeps/*")
    sweep_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#sweep-table tbody tr").count() == 2 or page.wait_for_function(
        "document.querySelectorAll('#sweep-table tbody tr').length === 2")
    page.wait_for_function("document.getElementById('sweep-status').textContent === 'finished'", timeout=300_000)
    sweep = server.client.get(f"/api/sweeps/{sweep_id}").json()
    assert [r["settings"]["lr_g+lr_d"] for r in sweep["runs"]] == [2e-4, 1e-3]
    assert all(r["status"] == "completed" for r in sweep["runs"])
    assert "completed" in page.locator("#sweep-table tbody").inner_text()
    assert painted(page, "#parallel") > 1000
