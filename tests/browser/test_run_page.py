"""The run page's parts in real Chromium: the pure series functions, smoothing that is the same live and after a reload,
the protocol's optional series, reconnecting when the browser is online again, the run JSON's speed, ETA, durations and
checkpoint labels, and the API docs offline."""

from __future__ import annotations

import pytest

from tests.browser.runs_in_db import write_run



def test_the_series_functions(server, page):
    """Live rows put into buckets give what the server's buckets give; steps going back or another width are refused."""
    page.goto(server.url + "/static/favicon.svg")  # any page of the server: the module is imported from it
    out = page.evaluate(
        """async () => {
        const s = await import('/static/run/series.js');
        const live = s.emptyHistory(['x'], 4, 10);
        const ok = s.addRows(live, {step: [1, 2, 3], epoch: [1, 1, 1], x: [1, null, 3]})
          && s.addRows(live, {step: [4, 5], epoch: [1, 2], x: [8, 2]});
        const snap = s.emptyHistory(['x']);
        s.addBuckets(snap, {width: 4, total_steps: 10, step: [4], epoch: [1], rows: [4],
                            x: {mean: [4], min: [1], max: [8], count: [3]}});
        s.addBuckets(snap, {width: 4, total_steps: 10, step: [5], epoch: [2], rows: [1],
                            x: {mean: [2], min: [2], max: [2], count: [1]}});
        return {
          ok, steps: live.step, rows: live.rows, means: s.means(live, 'x'), min: live.series.x.min, max: live.series.x.max,
          same: JSON.stringify(live) === JSON.stringify(snap),
          rewind: s.addRows(live, {step: [5, 6], x: [1, 1]}),
          otherWidth: s.addBuckets(live, {width: 8, step: [16], epoch: [1], rows: [1], x: {mean: [1], min: [1], max: [1], count: [1]}}),
          raw: s.smooth([1, null, 3], 0), smoothed: s.smooth([2, 2, 2], 0.9), bucket: [s.bucketOf(1, 4), s.bucketOf(4, 4), s.bucketOf(5, 4)],
        };
      }"""
    )
    assert out["ok"] and out["same"]
    assert out["steps"] == [4, 5] and out["rows"] == [4, 1]
    assert out["means"] == [4, 2] and out["min"] == [1, 2] and out["max"] == [8, 2]
    assert out["rewind"] is False and out["otherWidth"] is False
    assert out["raw"] == [1, None, 3]
    assert out["smoothed"] == pytest.approx([2, 2, 2], abs=1e-12)  # debiased: no pull towards zero
    assert out["bucket"] == [0, 0, 1]


def test_smoothing_is_the_same_live_and_after_a_reload(server, browser):
    """One run opened from the database (the server's buckets); the same rows fed live, 100 a message, into a page of a
    run planned alike (the page's buckets): every smoothed value agrees to 1e-9, for every series."""
    stored = write_run(server.runs_dir, 20_000)
    empty = write_run(server.runs_dir, 0, total_steps=20_000)
    rows = server.client.get(f"/api/runs/{stored}/metrics", params={"max_points": 1_000_000}).json()
    context = browser.new_context()
    try:
        reloaded, live = context.new_page(), context.new_page()
        reloaded.goto(f"{server.url}/runs/{stored}")
        live.goto(f"{server.url}/runs/{empty}")
        live.wait_for_selector("#conn.live", state="attached")
        live.evaluate(
            """(rows) => {
            for (let i = 0; i < rows.step.length; i += 100) {
              const chunk = {};
              for (const [k, v] of Object.entries(rows)) chunk[k] = v.slice(i, i + 100);
              window.ganboard.feed({type: "batch", rows: chunk});
            }
          }""",
            rows,
        )
        for p in (reloaded, live):
            p.wait_for_function("window.ganboard.lastStep() === 20000")
        assert live.evaluate("window.ganboard.bucketWidth()") == reloaded.evaluate("window.ganboard.bucketWidth()") == 16
        assert live.evaluate("window.ganboard.steps()") == reloaded.evaluate("window.ganboard.steps()")
        for name in ("loss_d", "loss_d_real", "loss_g", "d_x", "d_g_z"):
            a, b = (p.evaluate(f"window.ganboard.smoothed('{name}')") for p in (live, reloaded))
            assert len(a) == len(b) == 1250
            assert all((x is None and y is None) or abs(x - y) <= 1e-9 for x, y in zip(a, b)), name
    finally:
        context.close()


def test_optional_series_and_smoothing_on_both_charts(server, page):
    run_id = write_run(server.runs_dir, 300)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.pointCount() === 300")
    labels = page.evaluate("window.ganboard.charts.loss.series.map((s) => [s.label, s.show])")
    shown = {label: show for label, show in labels if label and not label.endswith(("min", "max"))}
    assert shown == {"step": True, "loss_D": True, "loss_D(real)": False, "loss_D(fake)": False, "loss_G": True}

    page.locator("#loss-chart .u-legend .u-series:not([hidden])", has_text="loss_D(real)").locator(".u-label").click()  # the legend shows it
    shown = page.evaluate("window.ganboard.charts.loss.series.filter((s) => s.label.startsWith('loss_D(real)')).map((s) => s.show)")
    assert shown == [True, True, True]  # the line and its envelope

    smoothed, raw = "window.ganboard.charts.dgz.data[3]", "window.ganboard.charts.dgz.data[1]"
    page.locator("#smoothing-d").fill("0")
    page.wait_for_function(f"JSON.stringify({smoothed}) === JSON.stringify({raw})")
    page.locator("#smoothing-d").fill("0.9")
    page.wait_for_function(f"JSON.stringify({smoothed}) !== JSON.stringify({raw})")
    assert page.text_content("#smoothing-d-value") == "0.90"


def test_the_page_reconnects_at_once_when_the_browser_is_online_again(server, page):
    run_id = write_run(server.runs_dir, 10)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_selector("#conn.live", state="attached")
    assert page.is_hidden("#conn")  # "live" beside "completed" would read as if the run were
    page.evaluate("window.ganboard.socket.retryMs = 600000; window.ganboard.dropConnection()")  # a ten-minute back-off
    page.wait_for_selector("#conn.reconnecting")  # a drop shows, whatever the run's status
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_selector("#conn.live", state="attached", timeout=15_000)


def run_json(server, run_id: int, **fields) -> dict:
    return {**server.run(run_id), **fields}


def test_speed_eta_durations_resume_and_checkpoint_labels_follow_the_run_json(server, page):
    run_id = write_run(server.runs_dir, 0, total_steps=1000)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_selector("#conn.live", state="attached")
    feed = lambda msg: page.evaluate("(msg) => window.ganboard.feed(msg)", msg)  # noqa: E731

    feed({"type": "run", "run": run_json(server, run_id, status="running", step=100, images_per_s=None, eta_seconds=None,
                                         active_seconds=0, device="cpu", bf16=False)})  # fmt: skip
    assert "ETA" not in page.text_content("#progress-text") and "images/s" not in page.text_content("#progress-text")
    assert page.is_visible("#conn.live")  # running: the connection is shown
    feed({"type": "run", "run": run_json(server, run_id, status="running", step=100, images_per_s=123.4, eta_seconds=90,
                                         active_seconds=30, device="cpu", bf16=True)})  # fmt: skip
    assert page.text_content("#progress-text").endswith("123 images/s · ETA 1m 30s")
    assert "bf16true (asked: –)" in page.text_content("#config").replace("\n", "")
    times = {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-03T00:00:00Z"}  # two days, mostly cancelled
    feed({"type": "run", "run": run_json(server, run_id, status="cancelled", images_per_s=123.4, eta_seconds=90,
                                         active_seconds=3725, resumable=False, **times)})  # fmt: skip
    text = page.text_content("#progress-text")
    assert "ETA" not in text and "images/s" not in text  # no step trained: nothing to measure
    feed({"type": "run", "run": run_json(server, run_id, status="cancelled", step=90, epoch=3, epoch_in_progress=4,
                                         total_epochs=70, mean_images_per_s=61.2, active_seconds=3725, **times)})  # fmt: skip
    assert page.text_content("#progress-text") == "3 of 70 epochs · in epoch 4 · step 90 of 1,000 · 61 images/s on average"
    assert "after 1h 2m" in page.text_content("#run-times") and page.is_hidden("#resume-button")
    feed({"type": "run", "run": run_json(server, run_id, status="cancelled", resumable=True, **times)})
    assert page.is_visible("#resume-button")

    checkpoints = [
        {"name": n, "size": 10, "epoch": e, "step": st, "label": lab, "sha256": None, "url": f"/x/{n}"}
        for n, e, st, lab in [("netg.pth", 29, 812, "latest"), ("netg_0010.pth", 10, 280, "after epoch 10"),
                              ("netg_e0029_s000812.pth", 29, 812, "in epoch 29, step 812"), ("resume.pt", 29, 812, "resume state")]
    ]  # fmt: skip
    feed({"type": "checkpoints", "checkpoints": checkpoints})  # a stop mid-epoch
    assert page.locator("#checkpoints a").all_text_contents() == ["netg.pth", "resume.pt", "netg_e0029_s000812.pth", "netg_0010.pth"]
    assert "in epoch 29, step 812" in page.text_content("#checkpoints") and "after epoch 10" in page.text_content("#checkpoints")


def test_the_run_list_shows_the_same_speed_eta_and_duration(server, page):
    running = write_run(server.runs_dir, 0, total_steps=1000)
    stopped = write_run(server.runs_dir, 0, total_steps=1000)
    extra = {running: dict(status="running", images_per_s=50.0, eta_seconds=125, active_seconds=60, started_at="2026-01-01T00:00:00Z"),
             stopped: dict(status="cancelled", images_per_s=50.0, eta_seconds=125, active_seconds=7200, mean_images_per_s=12.3,
                           step=90, epoch=3, epoch_in_progress=4, total_epochs=70,
                           started_at="2026-01-01T00:00:00Z", finished_at="2026-01-02T00:00:00Z")}  # fmt: skip

    def with_fields(route):
        runs = route.fetch().json()
        route.fulfill(json=[{**r, **extra.get(r["id"], {})} for r in runs])

    page.route("**/api/runs", with_fields)
    page.goto(server.url + "/")
    row = lambda run_id, cell: page.text_content(f'tr[data-run-id="{run_id}"] {cell}')  # noqa: E731
    page.wait_for_selector(f'tr[data-run-id="{stopped}"]')
    assert row(running, ".ips") == "50" and row(running, ".progress-text").endswith("ETA 2m 5s")
    assert row(stopped, ".ips") == "12" and "ETA" not in row(stopped, ".progress-text")  # its mean over the time it ran
    assert row(stopped, ".progress-text") == "3 of 70 epochs · in epoch 4 · step 90 of 1,000"  # as the run page says
    assert row(stopped, ".duration") == "2h 0m"  # the time it ran, not the day it sat cancelled


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_the_api_docs_work_offline(server, page, path, ready):
    outside: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server.url + path)
    page.wait_for_selector(ready, timeout=60_000)
    assert "/api/runs/{run_id}/cancel" in page.text_content("body")
    assert outside == []  # not even ReDoc's "by Redocly" logo (static/vendor/README.md)
    assert page.get_attribute(".docs-bar a:first-child", "href") == "/"  # a way back to the app
    page.evaluate("localStorage.setItem('ganboard-theme', 'dark')")  # as the app's toggle leaves it
    page.reload()
    page.wait_for_selector(ready, timeout=60_000)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 17, 21)"


def test_the_snapshot_heard_before_the_modules_loaded_is_drawn(server, page):
    """The page opens its websocket in an inline script, before its modules load (templates/run.html); when the snapshot
    arrives first, the modules take over the socket and draw what it heard, in order, and then live messages."""
    run_id = write_run(server.runs_dir, 3_000)
    page.add_init_script("""{
      const Real = window.WebSocket;
      window.opened = [];
      window.WebSocket = function (url) { window.opened.push([url, performance.now()]); return new Real(url); };
      window.WebSocket.prototype = Real.prototype;
      window.WebSocket.OPEN = Real.OPEN;
    }""")
    page.route("**/static/run/main.js", lambda route: (page.wait_for_timeout(1_500), route.continue_()))
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard && window.ganboard.pointCount() > 0")
    assert page.evaluate("window.ganboard.lastStep()") == 3_000
    assert page.text_content("#conn") == "live"
    opened = page.evaluate("window.opened")
    main_js = page.evaluate("performance.getEntriesByName(new URL('/static/run/main.js', location).href)[0].responseEnd")
    assert len(opened) == 1 and opened[0][1] < main_js - 1_000  # one socket, opened long before main.js came
    page.evaluate("window.ganboard.dropConnection()")  # and a reconnect after it opens a socket of its own
    page.wait_for_function("window.opened.length === 2 && document.getElementById('conn').textContent === 'live'")
    assert page.evaluate("window.opened")[1][0].endswith("?after=3000")
