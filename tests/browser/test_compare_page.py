"""The comparison page in real Chromium: three runs written into the database (configs that differ in two keys, grids at
different epochs) and one real training run, picked with the list's checkboxes and opened at /compare?runs=...; runs
that differ only in their seed grouped as one line with a band, and runs of two batch sizes by images seen."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from sqlalchemy import insert, update

from app.storage.db import Metric, Run, Sample, make_engine, make_sessionmaker
from tests.browser.conftest import ARTIFACTS
from tests.browser.runs_in_db import write_run
from tests.harness import TINY


def write_grid(path: Path, seed: int) -> None:
    """A stand-in sample grid: 8x8 tiles of one colour each, different per run and epoch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tiles = Image.frombytes("RGB", (8, 8), bytes((seed * 37 + i * 11) % 256 for i in range(8 * 8 * 3)))
    tiles.resize((64, 64), Image.NEAREST).save(path)


def stored_runs(runs_dir: Path) -> list[int]:
    """Three finished runs: lr_g and g_every differ between them, the rest of the config is the same. Run a has grids at
    epochs 1, 2 and 3, run b at 1 and 3, run c at 2 only."""
    ids = [write_run(runs_dir, n) for n in (3_000, 2_000, 1_000)]
    changes = [{"lr_g": 2e-4, "g_every": 1}, {"lr_g": 1e-3, "g_every": 1}, {"lr_g": 2e-4, "g_every": 5}]
    grids = [(1, 2, 3), (1, 3), (2,)]
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            for run_id, change, epochs in zip(ids, changes, grids):
                config = s.get(Run, run_id).config | change
                s.execute(update(Run).where(Run.id == run_id).values(config=config, epoch=3, total_epochs=3))
                for e in epochs:
                    write_grid(runs_dir / str(run_id) / "samples" / f"epoch_{e:04d}.png", seed=run_id * 10 + e)
                s.execute(insert(Sample), [{"run_id": run_id, "epoch": e, "name": f"epoch_{e:04d}.png", "size": 1,
                                            "swd": 10.0 / e} for e in epochs])  # fmt: skip
    finally:
        engine.dispose()
    return ids


def test_garbled_unknown_and_too_many_runs_say_why(server):
    known = write_run(server.runs_dir, 10)
    r = server.client.get("/compare", params={"runs": "3,x7"})
    assert r.status_code == 422 and "not a run id: x7" in r.text
    r = server.client.get("/compare", params={"runs": ",".join(str(i) for i in range(1, 12))})
    assert r.status_code == 422 and "at most 10" in r.text
    r = server.client.get("/compare", params={"runs": "999998,999999"})
    assert r.status_code == 404 and "no run with id 999998, 999999" in r.text
    r = server.client.get("/compare", params={"runs": f"{known},999999"})
    assert r.status_code == 200 and "Not found, left out: run 999999" in r.text
    r = server.client.get("/compare", params={"runs": str(known), "x": "images; drop"})
    assert r.status_code == 422 and "x: &#39;images; drop&#39; is not an x axis" in r.text
    assert "(give one of step, epoch, time, images)" in r.text
    r = server.client.get("/compare", params={"runs": str(known), "group": "lr"})
    assert r.status_code == 422 and "group: &#39;lr&#39; is not a grouping (give seeds" in r.text
    r = server.client.get("/compare")  # nothing chosen yet: how to choose, not an error
    assert r.status_code == 200 and 'id="compare-empty"' in r.text and "compare-error" not in r.text


def test_compare_three_stored_runs_and_a_live_one(server, page):
    a, b, c = stored_runs(server.runs_dir)
    r = server.client.post("/api/runs", json={"name": "live-one", "config": {**TINY, "epochs": 40}})
    live = r.json()["id"]

    # the list's checkboxes make the link; it opens the page for exactly those runs
    page.goto(server.url + "/")
    for run_id in (a, b, c, live):
        page.check(f"#runs-table input.pick-run[data-run-id='{run_id}']")
    link = page.locator("#compare-link")
    assert link.text_content() == "Compare (4)"
    link.click()
    page.wait_for_url("**/compare?runs=*")
    ids = sorted(int(i) for i in page.url.split("runs=")[1].split(","))
    assert ids == sorted([a, b, c, live])
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")

    # one series per run and metric on each chart, each named by its run's id
    series = page.evaluate("window.compare.series()")
    for chart, n in (("loss", 2), ("d", 2), ("quality", 2)):
        assert len(series[chart]) == 4 * n, chart
        for run_id in ids:
            assert sum(label.startswith(f"#{run_id} ") for label in series[chart]) == n, (chart, run_id)
    page.wait_for_function("window.compare.drawnPoints('quality').some((n) => n >= 2)")
    assert all(label == "" or label.isdecimal() for label in page.evaluate("window.compare.qualityXTicks()"))  # whole epochs
    assert page.locator("#quality-chart .u-legend .u-value").first.text_content().strip().isdecimal()  # "3", not "3.00"
    drawn = page.evaluate("window.compare.drawnPoints('loss')")
    order = page.evaluate("window.compare.runIds()")
    held = [page.evaluate(f"window.compare.pointCount({i})") for i in (a, b, c)]
    assert held == [1_500, 2_000, 1_000]  # 3,000 steps come in buckets of 2
    assert [drawn[2 * order.index(run_id)] for run_id in (a, b, c)] == held  # loss D of each, every bucket drawn

    # the config diff holds exactly the keys that differ; "show all keys" adds the rest
    page.wait_for_selector(f"#config-diff thead a[href='/runs/{live}']")
    keys = page.eval_on_selector_all("#config-diff tbody tr", "rows => rows.map(r => r.dataset.key)")
    stored = server.run(a)["config"]
    differing = sorted({k for k in stored if len({repr(server.run(i)["config"].get(k)) for i in ids}) > 1})
    assert keys == differing and {"lr_g", "g_every"} <= set(keys)
    page.check("#config-all")
    assert page.locator("#config-diff tbody tr").count() == len(stored)
    page.uncheck("#config-all")

    # one slider moves every grid; a run without a grid at that epoch shows its nearest earlier one, labelled
    page.wait_for_function("Number(document.getElementById('grid-epoch').max) >= 3")
    page.locator("#grid-epoch").fill("2")
    at2 = page.evaluate("window.compare.gridSrcs()")
    page.locator("#grid-epoch").fill("3")
    at3 = page.evaluate("window.compare.gridSrcs()")
    pos = {run_id: order.index(run_id) for run_id in (a, b, c)}
    assert at2[pos[a]].endswith("epoch_0002.png") and at3[pos[a]].endswith("epoch_0003.png")
    assert at2[pos[b]].endswith("epoch_0001.png") and at3[pos[b]].endswith("epoch_0003.png")
    assert at2[pos[c]].endswith("epoch_0002.png") and at3[pos[c]].endswith("epoch_0002.png")
    caption = page.locator(f"#grids figure[data-run-id='{b}'] figcaption")
    page.locator("#grid-epoch").fill("2")
    assert caption.text_content() == "epoch 1 (no grid at 2: nearest earlier)"

    # the smoothing slider and the x axis apply to every run
    page.locator("#smoothing").fill("0")
    raw = [page.evaluate(f"window.compare.smoothed({i}, 'loss_d')") for i in (a, b, c)]
    page.locator("#smoothing").fill("0.9")
    smoothed = [page.evaluate(f"window.compare.smoothed({i}, 'loss_d')") for i in (a, b, c)]
    assert all(x[:50] != y[:50] for x, y in zip(raw, smoothed))
    assert page.text_content("#smoothing-value") == "0.90"
    page.select_option("#x-axis", "epoch")
    page.wait_for_function("document.querySelector('#loss-chart .u-legend th')?.textContent.includes('epoch')")
    assert max(page.evaluate("window.compare.xs()")) == 3.0  # 3,000 steps of 3 epochs: step / 1,000
    page.select_option("#x-axis", "time")
    page.wait_for_function("document.querySelector('#loss-chart .u-legend th')?.textContent.includes('seconds')")
    # rows written with time = step, no start time: seconds since its first bucket (steps 1-2, newest time 2)
    assert max(page.evaluate("window.compare.xs()")) == 2_998

    # the live run's points grow on the page
    page.wait_for_function(f"window.compare.pointCount({live}) > 0")
    first = page.evaluate(f"window.compare.lastStep({live})")
    page.wait_for_function(f"window.compare.lastStep({live}) > {first}")
    assert page.evaluate(f"window.compare.lastTime({live})") is not None  # live rows carry the wall-time axis's x
    page.select_option("#x-axis", "step")

    page.screenshot(path=str(ARTIFACTS / "compare-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)  # the charts follow the new width (ResizeObserver)
    page.screenshot(path=str(ARTIFACTS / "compare-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    server.client.post(f"/api/runs/{live}/cancel")


def test_the_table_view_has_the_checkboxes_too(server, page):
    ids = [write_run(server.runs_dir, 10) for _ in range(2)]
    page.goto(server.url + "/?view=table")
    for run_id in ids:
        page.check(f"#compare-table input.pick-run[data-run-id='{run_id}']")
    href = page.get_attribute("#compare-link", "href")
    assert sorted(map(int, href.split("runs=")[1].split(","))) == ids


def test_a_filter_then_select_shown(server, page):
    """Only the runs the filter shows are ticked."""
    ids = [write_run(server.runs_dir, n) for n in (21, 22, 23)]
    page.goto(server.url + "/")
    page.fill("#run-search", "2 batches")  # the name of the 22-batch run only
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 1")
    page.click("#pick-shown")
    assert page.get_attribute("#compare-link", "href") == f"/compare?runs={ids[1]}"
    assert page.text_content("#compare-link") == "Compare (1)"


def change_runs(runs_dir: Path, changes: dict[int, dict], loss_d_offset: dict[int, float] | None = None) -> None:
    """Config keys changed per run, and a constant added to some runs' loss_d rows (runs written without stored buckets:
    the server aggregates the rows as they are now)."""
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            for run_id, change in changes.items():
                s.execute(update(Run).where(Run.id == run_id).values(config=s.get(Run, run_id).config | change))
            for run_id, offset in (loss_d_offset or {}).items():
                s.execute(update(Metric).where(Metric.run_id == run_id).values(loss_d=Metric.loss_d + offset))
    finally:
        engine.dispose()


def test_seeds_grouped_draw_one_line_with_a_band_and_stay_in_the_address(server, page):
    a, b, c = (write_run(server.runs_dir, 200, store_buckets=False) for _ in range(3))
    change_runs(server.runs_dir, {a: {"seed": 1}, b: {"seed": 2}, c: {"seed": 1, "lr_g": 1e-3}}, loss_d_offset={b: 0.5})
    page.goto(f"{server.url}/compare?runs={a},{b},{c}")
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    assert len(page.evaluate("window.compare.series()")["loss"]) == 3 * 2  # a line per run and metric
    page.locator("#smoothing").fill("0")
    page.check("#group-seeds")
    assert page.url.endswith(f"/compare?runs={a},{b},{c}&group=seeds")
    page.wait_for_function("window.compare.series().loss.length === 2 * 3 + 2")
    labels = page.evaluate("window.compare.series()")["loss"]
    mean_d = f"#{a} #{b} (2 seeds) · {labels[0].split(' · ')[1]}"
    assert labels[:3] == [mean_d, f"{mean_d} min", f"{mean_d} max"]  # a and b: one line, its min and max
    assert labels[6].startswith(f"#{c} ") and len(labels) == 8  # c has another lr: alone
    assert page.evaluate("window.compare.bands('loss')") == [[3, 2], [6, 5]]  # a band between each min and max
    data = page.evaluate("window.compare.data('loss')")
    raw_a, raw_b = (page.evaluate(f"window.compare.smoothed({i}, 'loss_d')") for i in (a, b))
    assert data[0] == list(range(1, 201))
    assert data[1] == [(x + y) / 2 for x, y in zip(raw_a, raw_b)]  # the mean of the two seeds at each step
    assert data[2] == raw_a and data[3] == raw_b  # min and max: b's loss_d is a's + 0.5
    swatches = page.eval_on_selector_all("#compare-legend .swatch", "els => els.map(e => e.style.background)")
    assert swatches[0] == swatches[1] != swatches[2]  # the group's colour on both its runs

    page.reload()  # the address holds the view
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    assert page.is_checked("#group-seeds")
    page.wait_for_function("window.compare.series().loss.length === 8")
    page.uncheck("#group-seeds")
    assert page.url.endswith(f"/compare?runs={a},{b},{c}")
    page.wait_for_function("window.compare.series().loss.length === 6")


def test_images_seen_line_up_runs_of_two_batch_sizes(server, page):
    small, large = write_run(server.runs_dir, 40), write_run(server.runs_dir, 20)
    change_runs(server.runs_dir, {small: {"batch_size": 64}, large: {"batch_size": 128}})
    page.goto(f"{server.url}/compare?runs={small},{large}")
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    page.locator("#smoothing").fill("0")
    page.select_option("#x-axis", "images")
    assert page.url.endswith(f"/compare?runs={small},{large}&x=images")
    page.wait_for_function("document.querySelector('#loss-chart .u-legend th')?.textContent.includes('images seen')")
    data = page.evaluate("window.compare.data('loss')")
    at = data[0].index(1280)  # step 20 of batch 64, step 10 of batch 128
    assert data[1][at] == page.evaluate(f"window.compare.smoothed({small}, 'loss_d')")[19]
    assert data[3][at] == page.evaluate(f"window.compare.smoothed({large}, 'loss_d')")[9]
    assert max(data[0]) == 40 * 64 == 20 * 128

    page.goto(f"{server.url}/compare?runs={small},{large}&x=images&group=seeds")  # a link opens the same view
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    assert page.input_value("#x-axis") == "images" and page.is_checked("#group-seeds")
    assert max(page.evaluate("window.compare.xs()")) == 2560
    assert len(page.evaluate("window.compare.series()")["loss"]) == 4  # batch sizes differ: nothing grouped
