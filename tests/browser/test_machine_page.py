"""The run page's Machine card in Chromium: images/s, CPU and memory drawn from the snapshot's machine samples, GPU
series only when the samples have GPU values, and a live sample added to the charts."""

from __future__ import annotations

from sqlalchemy import insert

from app.storage.db import SystemSample, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run
from trainer.config import TrainConfig

BATCH = TrainConfig().batch_size


def add_samples(runs_dir, run_id: int, n: int, gpu: bool, attempt: int = 1, first: int = 0) -> None:
    """A sample every 5 s, 10 steps apart: 2*BATCH images/s."""
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        rows = [dict(run_id=run_id, attempt=attempt, time=1.7e9 + 5 * i, step=10 * i, cpu_percent=150.0 + i, rss_mb=900.0 + i,
                     gpu_util=80.0 if gpu else None, gpu_mem_mb=4000.0 if gpu else None, gpu_temp_c=60.0 if gpu else None)
                for i in range(first, first + n)]  # fmt: skip
        s.execute(insert(SystemSample), rows)
    engine.dispose()


def usage_shown(page) -> list[bool]:
    return page.evaluate("window.ganboard.machineSeriesShown()")


def test_the_machine_card_draws_speed_and_usage_and_adds_live_samples(server, page):
    cpu_run = write_run(server.runs_dir, 100)
    add_samples(server.runs_dir, cpu_run, 30, gpu=False)
    page.goto(f"{server.url}/runs/{cpu_run}")
    page.wait_for_function("window.ganboard && window.ganboard.machineCount() === 30")
    assert page.locator("#machine-empty").is_hidden()
    speeds = page.evaluate("window.ganboard.imagesPerSecond()")
    assert speeds[0] is None and speeds[1:] == [2 * BATCH] * 29
    assert page.locator("#speed-chart canvas").count() == 1 and page.locator("#usage-chart canvas").count() == 1
    assert usage_shown(page) == [True, True, False, False, False]  # CPU, RSS; no GPU on this run
    legend = page.locator("#usage-chart .u-legend").text_content()
    assert "179%" in legend and "929 MB" in legend  # the newest values, with the cursor off the chart
    ranges = page.evaluate("window.ganboard.machineScales()")  # drawn inside the chart (they were above a 0..1 axis)
    assert 179 <= ranges["pct"][1] < 400 and 929 <= ranges["mb"][1] < 2000, ranges

    page.evaluate("""window.ganboard.feed({type: "system", attempt: 1, time: 1.7e9 + 150, step: 300, cpu_percent: 99,
                      rss_mb: 1000, gpu_util: null, gpu_mem_mb: null, gpu_temp_c: null})""")
    assert page.evaluate("window.ganboard.machineCount()") == 31
    assert page.evaluate("window.ganboard.imagesPerSecond()")[-1] == 2 * BATCH


def test_images_per_second_comes_from_samples_of_one_attempt(server, page):
    """A resumed attempt's first sample follows a pause and a jump in steps: no rate between two attempts (it drew
    ~1,150 images/s spikes after every resume)."""
    run_id = write_run(server.runs_dir, 100)
    add_samples(server.runs_dir, run_id, 10, gpu=False)
    add_samples(server.runs_dir, run_id, 10, gpu=False, attempt=2, first=10)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard && window.ganboard.machineCount() === 20")
    speeds = page.evaluate("window.ganboard.imagesPerSecond()")
    assert speeds[0] is None and speeds[10] is None and speeds[1:10] == speeds[11:] == [2 * BATCH] * 9

    gpu_run = write_run(server.runs_dir, 100)
    add_samples(server.runs_dir, gpu_run, 5, gpu=True)
    page.goto(f"{server.url}/runs/{gpu_run}")
    page.wait_for_function("window.ganboard && window.ganboard.machineCount() === 5")
    assert usage_shown(page) == [True, True, True, True, True]
    assert "60 °C" in page.locator("#usage-chart .u-legend").text_content()


def test_one_sample_spans_minutes_not_years(server, page):
    """uPlot widened a zero-width time range to three years: the axis of a run with one sample read 2027, 2028, 2029."""
    run_id = write_run(server.runs_dir, 100)
    add_samples(server.runs_dir, run_id, 1, gpu=False)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard && window.ganboard.machineCount() === 1")
    lo, hi = page.evaluate("window.ganboard.machineSeconds()")
    assert lo <= 1.7e9 <= hi and hi - lo <= 600, (lo, hi)
    assert page.evaluate("window.ganboard.machineScales()")["pct"][1] >= 150


def test_the_list_shows_the_machine_strip(server, page):
    page.goto(server.url + "/")
    strip = page.locator("#machine-strip")
    strip.wait_for()
    machine = server.client.get("/api/machine").json()
    if machine["gpus"]:
        assert f"GPU {machine['gpus'][0]['index']} {machine['gpus'][0]['name']}" in strip.text_content()
    else:
        assert strip.text_content().startswith(f"CPU: {machine['cpu']['count']} cores, load ")
        assert "running: idle" in strip.text_content()  # nothing running on this server
