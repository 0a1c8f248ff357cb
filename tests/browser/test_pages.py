"""A person in Chromium: start a run from the form, watch it live, download a checkpoint, cancel, reload, bad input."""

from __future__ import annotations

import torch

from tests.browser.runs_in_db import write_run
from tests.conftest import TINY
from trainer.config import TrainConfig
from trainer.models import build_generator


def fill_tiny_form(page, **extra):
    values = {**TINY, **extra}
    page.select_option("select[name=dataset]", values.pop("dataset"))
    page.select_option("select[name=device]", values.pop("device"))
    page.select_option("select[name=image_size]", str(values.pop("image_size")))
    for name, value in values.items():
        if isinstance(value, bool):
            page.set_checked(f"input[name={name}]", value)
        else:
            page.fill(f"input[name={name}]", str(value))


def points(page) -> int:
    return page.evaluate("window.ganboard.pointCount()")


def test_start_a_run_from_the_form_and_watch_it_finish(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#field-dataset")
    page.fill("input[name=name]", "from-the-browser")
    fill_tiny_form(page, epochs=3)
    page.click("#start-button")
    page.wait_for_url("**/runs/*")

    page.wait_for_function("window.ganboard.pointCount() > 0")
    first = points(page)
    page.wait_for_function(f"window.ganboard.pointCount() > {first}")  # the chart gains points while it trains
    page.wait_for_function("document.getElementById('sample-img').naturalWidth > 0")
    page.wait_for_function("Number(document.getElementById('progress').dataset.step) > 0")
    page.wait_for_selector("#status.completed")
    assert page.text_content("#run-name") == "from-the-browser"
    assert page.evaluate("window.ganboard.sampleCount()") == 3
    page.wait_for_function("window.ganboard.qualityEpochs() === 3")  # every epoch's SWD, live

    slider = page.locator("#epoch-slider")
    slider.fill("1")  # the slider switches grids
    assert page.get_attribute("#sample-img", "src").endswith("epoch_0001.png")
    assert "epoch 1 of 3" in page.text_content("#sample-label")
    slider.fill("3")
    assert page.get_attribute("#sample-img", "src").endswith("epoch_0003.png")

    progress = page.locator("#progress")
    run_id = int(page.url.rsplit("/", 1)[1])
    assert int(progress.get_attribute("data-step")) == server.run(run_id)["total_steps"]

    with page.expect_download() as info:
        page.click("#checkpoints a:text-is('netg.pth')")
    path = info.value.path()
    netg = build_generator(TrainConfig(**TINY))
    netg.load_state_dict(torch.load(path, weights_only=True))


def test_a_bad_value_is_shown_beside_its_field(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#field-batch_size")
    before = len(server.client.get("/api/runs").json())
    page.fill("input[name=batch_size]", "0")
    page.click("#start-button")
    error = page.locator('.field-error[data-field="batch_size"]')
    error.wait_for()
    assert "greater than or equal to 1" in error.text_content()
    assert page.url == server.url + "/"
    assert len(server.client.get("/api/runs").json()) == before


def test_image_size_and_channels_offer_only_the_valid_values(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#field-image_size")
    options = "(name) => [...document.querySelector(`select[name=${name}]`).options].map((o) => o.value)"
    assert page.evaluate(options, "image_size") == ["32", "64", "96", "128"]
    assert page.evaluate(options, "channels") == ["1", "3"]
    page.select_option("select[name=image_size]", "64")
    page.select_option("select[name=channels]", "1")
    page.fill("input[name=name]", "grey-64")
    page.click("#start-button")
    page.wait_for_url("**/runs/*")
    run = server.run(int(page.url.rsplit("/", 1)[1]))
    assert (run["config"]["image_size"], run["config"]["channels"]) == (64, 1)  # sent as numbers
    server.client.post(f"/api/runs/{run['id']}/cancel")


def test_cancel_from_the_run_page(server, page):
    run = server.create(epochs=1000)
    page.goto(f"{server.url}/runs/{run['id']}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    page.click("#cancel-button")
    page.wait_for_selector("#status.cancelled")
    assert page.is_visible("#resume-button") and not page.is_visible("#cancel-button")


def test_reload_mid_run_and_a_dropped_connection_keep_the_whole_history(server, page):
    """16,000 planned steps: buckets of 8 steps, filled live. Every step is counted once, from step 1, no gap."""
    run = server.create(epochs=1000)
    page.goto(f"{server.url}/runs/{run['id']}")
    page.wait_for_function("window.ganboard.rowCount() > 10")
    page.reload()
    page.wait_for_function("window.ganboard.rowCount() > 10")
    assert page.evaluate("window.ganboard.bucketWidth()") == 8
    assert page.evaluate("window.ganboard.rowCount() === window.ganboard.lastStep()")
    steps = page.evaluate("window.ganboard.steps()")
    assert steps[:-1] == list(range(8, 8 * len(steps), 8))  # whole buckets, then the one filling now

    page.evaluate("window.ganboard.dropConnection()")
    page.wait_for_selector("#conn.reconnecting, #conn.live")
    last = page.evaluate("window.ganboard.lastStep()")
    page.wait_for_function(f"window.ganboard.lastStep() > {last + 5}")
    page.wait_for_selector("#conn.live")
    assert page.evaluate("window.ganboard.rowCount() === window.ganboard.lastStep()")  # what it missed was filled in
    server.client.post(f"/api/runs/{run['id']}/cancel")


def test_a_run_of_200000_batches_opens_bucketed(server, page):
    """Written straight into the database: the page gets ~1,600 buckets of 128 steps, not 200,000 rows."""
    run_id = write_run(server.runs_dir, 200_000, spike={123_456: 50.0})
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    assert page.evaluate("[window.ganboard.pointCount(), window.ganboard.bucketWidth()]") == [1563, 128]
    assert page.evaluate("[window.ganboard.lastStep(), window.ganboard.rowCount()]") == [200_000, 200_000]
    assert page.evaluate("Math.max(...window.ganboard.charts.loss.data[2])") == 50  # the spike, in loss_D's envelope
    # time to first paint: bench/first_paint.py


def test_narrow_screen_keeps_everything_reachable(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#start-button")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling of the page itself
    context.close()
