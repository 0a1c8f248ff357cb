"""Chart tools in real Chromium: each chart card's PNG button downloads the chart as drawn (opened with PIL), a zoom
into a few hundred steps of a 200,000-step run draws that range's raw rows until the zoom is reset, and the run list
filters on config values (key=value, key>value, key<value) kept in the URL."""

from __future__ import annotations

from PIL import Image
from sqlalchemy import update

from app.storage.db import Run, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run


def set_configs(runs_dir, changes: dict[int, dict]) -> None:
    """Change stored runs' configs: {run id: {key: value}}."""
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            for run_id, change in changes.items():
                s.execute(update(Run).where(Run.id == run_id).values(config=s.get(Run, run_id).config | change))
    finally:
        engine.dispose()


def download_png(page, box: str):
    """Clicks the PNG button of chart `box`; returns (file name, image, the chart canvas's [width, height])."""
    with page.expect_download() as download:
        page.click(f'button[data-png="{box}"]')
    image = Image.open(download.value.path())
    image.load()
    canvas = page.evaluate(f"(c => [c.width, c.height])(document.querySelector('#{box} canvas'))")
    return download.value.suggested_filename, image, canvas


def assert_drawn(image: Image.Image, canvas: list[int]) -> None:
    """As wide as the chart, its height plus the title and legend, and not blank: many colours."""
    assert image.format == "PNG" and image.size[0] == canvas[0] and image.size[1] > canvas[1]
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 10, colours


def test_png_buttons_download_the_charts(server, page):
    a, b = write_run(server.runs_dir, 3_000), write_run(server.runs_dir, 1_000)
    page.goto(f"{server.url}/runs/{a}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    charts = [("loss-chart", "loss"), ("dgz-chart", "dgz"), ("grad-chart", "gradients"), ("quality-chart", "quality")]
    for box, name in charts:
        filename, image, canvas = download_png(page, box)
        assert filename == f"run-{a}-{name}.png"
        assert_drawn(image, canvas)

    page.goto(f"{server.url}/compare?runs={a},{b}")
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    for box, name in [("loss-chart", "loss"), ("dgz-chart", "dgz")]:
        filename, image, canvas = download_png(page, box)
        assert filename == f"compare-{a}-{b}-{name}.png"
        assert_drawn(image, canvas)


ZOOMED_POINTS = "([lo, hi]) => window.ganboard.charts.loss.data[0].filter((x) => x >= lo && x <= hi).length"


def test_zoom_into_a_long_run_draws_its_raw_rows(server, page):
    """200,000 steps in buckets of 128; zoomed to steps 1000..1500 the chart holds one point per step, and a
    double-click goes back to the buckets."""
    run_id = write_run(server.runs_dir, 200_000)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    assert page.evaluate("window.ganboard.bucketWidth()") == 128
    assert page.evaluate(ZOOMED_POINTS, [1000, 1500]) == 4  # buckets ending at 1024, 1152, 1280, 1408

    page.evaluate("window.ganboard.charts.loss.setScale('x', {min: 1000, max: 1500})")
    page.wait_for_function(f"({ZOOMED_POINTS})([1000, 1500]) === 501")
    u = "window.ganboard.charts.loss"
    steps = page.evaluate(f"{u}.data[0].filter((x) => x >= 1000 && x <= 1500)")
    assert steps == list(range(1000, 1501))
    assert page.evaluate(f"[{u}.scales.x.min, {u}.scales.x.max]") == [1000, 1500]  # the zoom stays
    # raw rows: a one-step bucket has the same min and max, the row's value
    one_step = f"(() => {{ const i = {u}.data[0].indexOf(1234); return {u}.data[1][i] === {u}.data[2][i]; }})()"
    assert page.evaluate(one_step)
    assert page.evaluate(f"{u}.data[0][{u}.data[0].length - 1]") == 200_000  # the rest of the run still in buckets

    # live rows keep coming in while zoomed: merged and drawn, the zoom and the raw range kept
    page.evaluate("window.ganboard.feed({type: 'batch', rows: {step: [200001], epoch: [1], time: [200001], loss_d: [0.5]}})")
    page.wait_for_function(f"{u}.data[0][{u}.data[0].length - 1] === 200001")
    page.wait_for_timeout(300)  # the other charts, not zoomed, draw the new row too: that must not end the loss chart's zoom
    assert page.evaluate(f"[{u}.scales.x.min, {u}.scales.x.max]") == [1000, 1500]
    assert page.evaluate(ZOOMED_POINTS, [1000, 1500]) == 501

    page.dblclick("#loss-chart .u-over")
    page.wait_for_function(f"({ZOOMED_POINTS})([1000, 1500]) === 4")
    assert page.evaluate(f"{u}.data[0].length") == 1563
    assert page.evaluate(f"{u}.scales.x.max") >= 200_001


def test_filter_the_list_on_config_values(server, page):
    ids = [write_run(server.runs_dir, 10) for _ in range(3)]
    set_configs(server.runs_dir, {ids[0]: {"lr_d": 0.001, "batch_size": 32, "dataset": "mnist"},
                                  ids[1]: {"lr_d": 0.0002, "batch_size": 128, "dataset": "mnist"},
                                  ids[2]: {"lr_d": 0.0002, "batch_size": 256, "dataset": "cifar10"}})  # fmt: skip
    shown = "() => [...document.querySelectorAll('#runs-table tbody tr')].map((r) => Number(r.dataset.runId))"

    def filter_to(text: str) -> list[int]:
        page.fill("#filter-config", text)
        return sorted(i for i in page.evaluate(shown) if i in ids)

    page.goto(server.url + "/")
    page.wait_for_selector(f'#runs-table tr[data-run-id="{ids[2]}"]')
    assert filter_to("lr_d=0.001") == [ids[0]]
    assert filter_to("lr_d=1e-3") == [ids[0]]  # numbers compare as numbers
    assert filter_to("batch_size>64") == [ids[1], ids[2]]
    assert filter_to("batch_size<200 dataset=mnist") == [ids[0], ids[1]]
    assert filter_to("dataset=cifar10") == [ids[2]]
    assert page.locator("#filter-config-error").inner_text() == ""
    assert "config=dataset%3Dcifar10" in page.url

    page.select_option("#filter-dataset", "mnist")  # with the dataset filter: nothing is both
    assert sorted(i for i in page.evaluate(shown) if i in ids) == []
    page.select_option("#filter-dataset", "")

    page.reload()  # the filter comes back from the URL
    page.wait_for_selector(f'#runs-table tr[data-run-id="{ids[2]}"]')
    assert page.input_value("#filter-config") == "dataset=cifar10"
    assert sorted(i for i in page.evaluate(shown) if i in ids) == [ids[2]]

    assert filter_to("learning_rate=0.1") == ids  # a term it cannot read filters nothing, and says why
    assert page.locator("#filter-config-error").inner_text() == '"learning_rate": no run has this config key'
    filter_to("batch_size>big")
    assert page.locator("#filter-config-error").inner_text() == '"batch_size>big": > needs a number'
    filter_to("batch_size")
    assert "key=value" in page.locator("#filter-config-error").inner_text()
