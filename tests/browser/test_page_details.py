"""The pages in detail, in real Chromium: the run list live, clone and presets, the sample player, checkpoints, smoothing,
a failed run, a phone-sized screen. Waits, never sleeps: every condition is awaited with Playwright's own timeouts."""

from __future__ import annotations

import pytest

from tests.browser.runs_in_db import write_run
from tests.conftest import TINY, start_server

TOKEN = "a browser token"


@pytest.fixture(scope="module")
def finished(server):
    """A tiny run of three epochs with a checkpoint after each, trained to the end by a real worker."""
    run = server.create(epochs=3, save_every=1)
    return server.wait_status(run["id"], "completed", "failed", timeout=600)


def cancel_quietly(server, run_id: int) -> None:
    server.client.post(f"/api/runs/{run_id}/cancel")  # 409 when it already ended: fine


def test_the_run_list_updates_in_place_without_a_reload(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#run-form input[name=batch_size]")
    run = server.create(epochs=1000)
    row = page.locator(f'#runs-table tr[data-run-id="{run["id"]}"]')
    row.wait_for()
    page.evaluate(f"window.firstRow = document.querySelector('tr[data-run-id=\"{run['id']}\"]')")
    assert page.locator("#runs-table tbody tr").first.get_attribute("data-run-id") == str(run["id"])  # newest first
    row.locator(".badge.running").wait_for()
    page.wait_for_function(
        f"document.querySelector('tr[data-run-id=\"{run['id']}\"] .progress-text').textContent.includes('step')"
        f" && !document.querySelector('tr[data-run-id=\"{run['id']}\"] .losses .d').textContent.includes('–')"
    )
    assert page.evaluate(f"document.querySelector('tr[data-run-id=\"{run['id']}\"]') === window.firstRow")  # same node
    assert row.locator(".run-link").get_attribute("href") == f"/runs/{run['id']}"
    cancel_quietly(server, run["id"])
    row.locator(".badge.cancelled").wait_for()


def test_an_empty_server_says_what_to_do(tmp_path, browser):
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs)
    try:
        page = browser.new_page()
        page.goto(srv.url + "/")
        empty = page.locator("#runs-empty")
        empty.wait_for()
        assert "No runs yet" in empty.text_content() and "Start" in empty.text_content()
        assert not page.is_visible("#runs-table")
        page.close()
    finally:
        srv.stop()


def test_presets_and_clone_fill_the_form(server, finished, page):
    page.goto(f"{server.url}/?clone={finished['id']}")
    page.wait_for_selector("#form-notice:not([hidden])")
    config = finished["config"]
    for name in ("ngf", "ndf", "nz", "batch_size", "epochs", "save_every"):
        assert page.input_value(f"input[name={name}]") == str(config[name]), name
    assert page.input_value("select[name=image_size]") == str(config["image_size"])
    assert page.input_value("select[name=dataset]") == config["dataset"]
    assert page.input_value("select[name=device]") == config["device"]
    assert page.input_value("input[name=name]") == f"{finished['name']}-clone"

    page.click("[data-preset=article]")
    assert page.input_value("select[name=image_size]") == "96"
    assert page.input_value("input[name=g_every]") == "5"
    assert page.get_attribute("[data-preset=article]", "aria-pressed") == "true"
    page.click("[data-preset=quick]")
    assert page.input_value("select[name=image_size]") == "32"
    assert page.get_attribute("[data-preset=quick]", "aria-pressed") == "true"
    page.fill("input[name=epochs]", "3")
    assert page.get_attribute("[data-preset=quick]", "aria-pressed") == "false"  # no longer the preset


def test_an_empty_required_field_and_a_too_long_name_are_named(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#field-epochs")
    page.fill("input[name=epochs]", "")
    page.click("#start-button")
    page.locator('.field-error[data-field="epochs"]').filter(has_text="required").wait_for()  # not "a valid integer"
    assert page.get_attribute("input[name=epochs]", "aria-invalid") == "true"
    page.fill("input[name=epochs]", "2")
    page.evaluate("document.querySelector('input[name=name]').removeAttribute('maxlength')")
    page.fill("input[name=name]", "x" * 101)
    page.click("#start-button")
    page.locator('.field-error[data-field="name"]').filter(has_text="100").wait_for()
    assert page.text_content('.field-error[data-field="epochs"]') == ""  # the old message is gone
    assert page.url == server.url + "/"


def test_the_sample_player_checkpoints_config_and_smoothing(server, finished, page):
    assert finished["status"] == "completed", finished["error"]
    page.goto(f"{server.url}/runs/{finished['id']}")
    page.wait_for_function("window.ganboard.sampleCount() === 3 && window.ganboard.pointCount() > 0")
    page.wait_for_function("document.getElementById('sample-img').naturalWidth > 0")
    assert page.text_content("#sample-label") == "epoch 3 of 3"  # the newest grid first
    assert page.is_hidden("#sample-empty")

    # Play steps through every epoch's grid, from the first, and stops on the newest.
    page.evaluate("""() => {
        const img = document.getElementById('sample-img');
        window.seen = [];
        new MutationObserver(() => window.seen.push(img.getAttribute('src'))).observe(img, {attributes: true, attributeFilter: ['src']});
    }""")
    page.click("#play-button")
    page.wait_for_function("window.seen.length >= 3 && document.getElementById('play-button').textContent.includes('Play')")
    seen = page.evaluate("window.seen")
    assert [s.rsplit("/", 1)[1] for s in seen[-3:]] == ["epoch_0001.png", "epoch_0002.png", "epoch_0003.png"]
    assert page.input_value("#epoch-slider") == "3"
    with page.context.expect_page() as opened:  # the grid opens at its own size
        page.click("#sample-img")
    assert opened.value.url.endswith("/samples/epoch_0003.png")
    opened.value.close()

    # Checkpoints: the latest files first, then per-epoch copies; each with a size and the API's download URL.
    api = {c["name"]: c for c in server.client.get(f"/api/runs/{finished['id']}/checkpoints").json()}
    links = page.locator("#checkpoints a")
    names = links.all_text_contents()
    assert set(names) == set(api) and names[:3] == ["netg.pth", "netd.pth", "resume.pt"]
    for i, name in enumerate(names):
        assert links.nth(i).get_attribute("href") == api[name]["url"]
    assert all(size.strip() for size in page.locator("#checkpoints .size").all_text_contents())

    ticks = page.evaluate("(() => { const u = window.ganboard.charts.loss; return u.axes[0].values(u, [20, 45000, 2500000]); })()")
    assert ticks == ["20", "45k", "2.5M"]  # step labels on the x axis, short
    assert "batch_size" in page.text_content("#config")
    assert page.is_hidden("#cancel-button") and page.is_hidden("#resume-button")
    assert page.get_attribute("#clone-link", "href").startswith(f"/?clone={finished['id']}")

    # Smoothing 0 draws the raw losses; more smoothing changes the lines, never the number of points.
    smoothed = "window.ganboard.charts.loss.data[3]"
    raw = "window.ganboard.charts.loss.data[1]"
    page.locator("#smoothing").fill("0")
    page.wait_for_function(f"JSON.stringify({smoothed}) === JSON.stringify({raw})")
    page.locator("#smoothing").fill("0.95")
    page.wait_for_function(f"JSON.stringify({smoothed}) !== JSON.stringify({raw}) && {smoothed}.length === {raw}.length")
    assert page.text_content("#smoothing-value") == "0.95"

    # Hover: both charts' legends show the values of the step under the cursor.
    box = page.locator("#loss-chart .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    step_under_cursor = "document.querySelector('#{} .u-legend .u-series .u-value').textContent"
    page.wait_for_function(f"window.ganboard.charts.dgz.cursor.idx != null && {step_under_cursor.format('dgz-chart')} !== '–'")
    assert page.evaluate(step_under_cursor.format("dgz-chart")) == page.evaluate(step_under_cursor.format("loss-chart"))
    assert page.evaluate(step_under_cursor.format("loss-chart")) != str(finished["step"])  # not the newest: the hovered one
    legend = page.locator("#dgz-chart .u-legend").inner_text()
    assert "D(x)" in legend and "D(G(z))" in legend


def test_a_run_whose_data_cannot_load_shows_its_error_and_no_resume(server, page):
    """Counted at submit (one file, batch_size 1), found unreadable by the worker: Resume would fail the same way."""
    broken = server.runs_dir.parent / "broken-images"
    broken.mkdir(exist_ok=True)
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    run = server.create(dataset="folder", data_path=str(broken), batch_size=1)
    page.goto(f"{server.url}/runs/{run['id']}")
    page.wait_for_selector("#status.failed")
    assert page.text_content("#status") == "failed"
    error = page.locator("#error")
    error.wait_for()
    assert str(broken) in error.text_content()
    assert page.is_hidden("#resume-button") and page.is_hidden("#cancel-button")
    assert page.text_content("#sample-empty") == "First sample grid after epoch 1"


@pytest.mark.parametrize("path", ["/", "/runs/{id}"])
def test_a_phone_screen_never_scrolls_sideways(server, finished, browser, path):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + path.format(id=finished["id"]))
    if "runs" in path:
        page.wait_for_function("window.ganboard.pointCount() > 0 && document.getElementById('sample-img').naturalWidth > 0")
        chart = page.locator("#loss-chart canvas").bounding_box()
        assert chart["x"] >= 0 and chart["x"] + chart["width"] <= 390
    else:
        page.wait_for_selector(f'#runs-table tr[data-run-id="{finished["id"]}"] img:not([hidden])')
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
    assert not errors, errors


def test_an_unknown_run_is_a_404_page(server, page):
    response = page.goto(f"{server.url}/runs/999999")
    assert response.status == 404
    assert "not found" in page.text_content("body")


def test_with_a_token_the_pages_work_after_logging_in(tmp_path, browser):
    """The login cookie carries the page's fetches, its POST (same origin) and its websocket."""
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = start_server(runs, GANBOARD_TOKEN=TOKEN, wait_path="/login")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(srv.url + "/")
        page.wait_for_url("**/login**")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#runs-empty:not([hidden])")
        page.wait_for_selector("#field-dataset")
        page.select_option("select[name=dataset]", TINY["dataset"])
        page.select_option("select[name=device]", TINY["device"])
        for name in ("ngf", "ndf", "nz", "batch_size"):
            page.fill(f"input[name={name}]", str(TINY[name]))
        page.fill("input[name=epochs]", "1000")
        page.click("#start-button")
        page.wait_for_url("**/runs/*")
        page.wait_for_function("window.ganboard.pointCount() > 0")  # the websocket got in with the cookie
        page.wait_for_selector("#conn.live")
        page.click("#cancel-button")
        page.wait_for_selector("#status.cancelled")
    finally:
        context.close()
        srv.stop()


LAYOUT_SHIFTS = """window.layoutShift = 0; window.shifted = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if (entry.hadRecentInput) continue;
    window.layoutShift += entry.value;
    window.shifted.push(entry.sources.map((s) => s.node ? (s.node.id || s.node.className || s.node.nodeName) : "?").join(","));
  }
}).observe({type: "layout-shift", buffered: true});"""


def test_nothing_jumps_as_the_data_arrives(server, browser):
    """Cumulative layout shift from opening a fresh run's page until its first sample grid shows, and of the run list:
    well under 0.1, Chromium's own threshold for a page that does not jump, on a laptop and on a phone."""
    run = server.create(epochs=2)
    pages = []
    for width, height in ((1280, 800), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.add_init_script(LAYOUT_SHIFTS)
        page = context.new_page()
        page.set_default_timeout(120_000)  # an epoch on the shared 2 cores can take a while
        page.goto(f"{server.url}/runs/{run['id']}")
        pages.append((width, context, page))
    try:
        for width, _, page in pages:
            page.wait_for_function("window.ganboard.pointCount() > 0 && document.getElementById('sample-img').naturalWidth > 0")
            assert page.evaluate("window.layoutShift") < 0.05, (width, page.evaluate("window.shifted"))
            page.goto(server.url + "/")
            page.wait_for_selector(f'#runs-table tr[data-run-id="{run["id"]}"]')
            page.wait_for_selector("#field-dataset")
            assert page.evaluate("window.layoutShift") < 0.05, (width, page.evaluate("window.shifted"))
    finally:
        for _, context, _ in pages:
            context.close()
        cancel_quietly(server, run["id"])


def test_a_page_left_open_on_a_long_run_stays_bounded(server, page):
    """150,000 live rows of a run planned for 200,000 steps, fed as the server sends them (100 per message): every one
    counted, in buckets of 128 steps (the width the server would use), so memory stays bounded and spikes survive."""
    run_id = write_run(server.runs_dir, 0, total_steps=200_000)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_selector("#conn.live", state="attached")  # a stored run that ended: connected, not shown as live
    page.evaluate(
        """async () => {
        let step = 1;
        for (let m = 0; m < 1500; m++) {
          const rows = {step: [], epoch: [], loss_d: [], loss_g: [], d_x: [], d_g_z: []};
          for (let i = 0; i < 100; i++, step++) {
            rows.step.push(step); rows.epoch.push(1); rows.loss_d.push(step === 5000 ? 50 : 1 + (step % 7) / 10);
            rows.loss_g.push(step % 5 ? null : 2); rows.d_x.push(0.7); rows.d_g_z.push(0.3);
          }
          window.ganboard.feed({type: "batch", rows});
          if (m % 50 === 0) await new Promise((r) => setTimeout(r, 0));
        }
      }"""
    )
    page.wait_for_function("window.ganboard.lastStep() === 150000")
    assert page.evaluate("[window.ganboard.rowCount(), window.ganboard.bucketWidth()]") == [150_000, 128]
    steps = page.evaluate("window.ganboard.steps()")
    assert len(steps) == 1172 and steps[:2] == [128, 256] and steps[-1] == 150_000
    assert page.evaluate("Math.max(...window.ganboard.charts.loss.data[2].filter((v) => v !== null))") == 50  # the spike
