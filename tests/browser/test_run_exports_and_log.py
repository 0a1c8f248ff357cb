"""The run page's Export card (every export of the API, as links) and Worker log card (its tail, live while the run
trains, the whole file as a download), in Chromium against a real run."""

from __future__ import annotations

from tests.conftest import wait_for


def test_exports_and_the_worker_log_on_the_run_page(server, page):
    run = server.create(epochs=1)
    page.goto(f"{server.url}/runs/{run['id']}")
    # live while it trains: the log grows on the page without a reload
    page.wait_for_function("window.ganboard.logText().includes('training on cpu')")
    page.wait_for_selector("#status.completed", timeout=400_000)  # its FID at the end is slow on a busy CPU
    wait_for(lambda: "run %d completed" % run["id"] in page.evaluate("window.ganboard.logText()"), what="the last lines")
    assert page.is_hidden("#log-empty")

    links = page.eval_on_selector_all("#exports li:not([hidden]) a", "as => as.map(a => a.getAttribute('href'))")
    export = f"/api/runs/{run['id']}/export/"
    assert links == [export + name for name in
                     ("metrics.csv", "metrics.json", "samples.gif", "samples.webp", "samples.zip", "tensorboard.zip")]
    for name in ("metrics.csv", "tensorboard.zip"):
        with page.expect_download() as download:
            page.click(f"#exports a[href$='{name}']")
        assert download.value.suggested_filename == f"{run['name']}-{name}"
    with page.expect_download() as download:
        page.click("#log-download")
    assert download.value.suggested_filename == f"{run['name']}-worker.log"
    assert "training on cpu" in open(download.value.path()).read()


def test_a_queued_run_hides_the_grid_exports_and_says_when_the_log_comes(server, page):
    blockers = [server.create(epochs=1000) for _ in range(2)]  # both worker slots busy: the next run waits
    queued = server.create()
    try:
        page.goto(f"{server.url}/runs/{queued['id']}")
        page.wait_for_selector("#status.queued")
        assert page.is_visible("#log-empty") and page.is_hidden("#log")
        assert page.locator("#exports li[data-needs-samples]:visible").count() == 0
    finally:
        for run in (queued, *blockers):
            server.client.post(f"/api/runs/{run['id']}/cancel")
