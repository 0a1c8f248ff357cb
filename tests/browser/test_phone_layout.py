"""The pages on a phone (390 px) and a laptop (1280 px), in real Chromium: nothing scrolls sideways, checkpoint rows read
as name and badge over what the file holds and its size, a long run name keeps its room in the run list, the comparison
wraps long run names in legends and config headers and keeps a chart's PNG button beside its title, what a thumb taps
(sliders and checkboxes too) is at least 32 px high, the sample-quality chart leaves no empty band under it, the alert
badge reads in either theme, and the comparison says "live" only next to a run that can still change."""

from __future__ import annotations

import pytest

from sqlalchemy import update

from app.storage.db import Run, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run
from tests.browser.test_compare_page import stored_runs
from tests.browser.test_health_page import add_alert
from tests.browser.test_quality_page import add_quality

PHONE = {"width": 390, "height": 844}
LONG = "emoji-quick lr_d x10 with a rather long name to see wrapping"
TAP = 32  # px: the smallest height a finger hits reliably

BOX = "(e) => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; }"


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), page.url


def heights(page, selector: str) -> dict[str, float]:
    return page.eval_on_selector_all(selector, "(es) => Object.fromEntries(es.filter((e) => e.offsetParent)"
                                               ".map((e, i) => [`${i}: ${e.textContent.trim() || e.ariaLabel}`, e.getBoundingClientRect().height]))")


def assert_tappable(page, selector: str) -> None:
    found = heights(page, selector)
    assert found and all(h >= TAP for h in found.values()), found


# Where a tap a little above or below a checkbox's middle lands: on the box or on its label, across a 32 px band.
TAP_BAND = f"""(e) => {{ e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  return [-{TAP // 2 - 1}, -8, 0, 8, {TAP // 2 - 1}].filter((dy) => {{ const hit = document.elementFromPoint(x, y + dy);
    return !(hit === e || hit?.closest('label')?.control === e); }}); }}"""


def assert_checkbox_tappable(page, selector: str) -> None:
    missed = page.locator(selector).evaluate(TAP_BAND)
    assert not missed, f"{selector}: a tap this many px from its middle misses it: {missed}"


def set_status(runs_dir, run_id: int, status: str) -> None:
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    try:
        with make_sessionmaker(engine).begin() as s:
            s.execute(update(Run).where(Run.id == run_id).values(status=status))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def scored(server):
    """A finished run with a best-FID checkpoint pair and the latest netg.pth."""
    run_id = write_run(server.runs_dir, 100)
    add_quality(server.runs_dir, run_id)
    return run_id


def checkpoint_rows(page) -> list[dict[str, dict]]:
    page.locator("#checkpoints .badge.best").first.wait_for()
    rows = []
    for li in page.locator("#checkpoints li").all():
        parts = {"name": li.locator("a"), "label": li.locator(":scope > .muted"), "size": li.locator(".size"), "row": li}
        if li.locator(".badge.best").count():
            parts["badge"] = li.locator(".badge.best")
        rows.append({key: part.evaluate(BOX) for key, part in parts.items()})
    return rows


def test_checkpoint_rows_on_a_phone_name_and_badge_over_label_and_size(server, scored, page):
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/runs/{scored}")
    rows = checkpoint_rows(page)
    assert sum("badge" in r for r in rows) == 2
    for r in rows:
        if "badge" in r:  # the badge on the name's line, after it
            assert r["badge"]["top"] < r["name"]["bottom"] and r["badge"]["left"] > r["name"]["right"], r
        assert r["label"]["top"] >= r["name"]["bottom"] - 1, r  # what it holds under the name
        assert abs(r["label"]["top"] - r["size"]["top"]) < 3, r  # ... with the size on its line
        assert abs(r["size"]["right"] - r["row"]["right"]) < 1, r  # sizes in one column, on the right
        assert r["label"]["left"] == pytest.approx(r["name"]["left"], abs=1), r
    assert_tappable(page, "#checkpoints a")
    no_sideways_scroll(page)


def test_checkpoint_rows_on_a_laptop_stay_one_line(server, scored, page):
    page.goto(f"{server.url}/runs/{scored}")
    for r in checkpoint_rows(page):
        for part in ("label", "size", *(["badge"] if "badge" in r else [])):
            assert r[part]["top"] < r["name"]["bottom"] and r[part]["bottom"] > r["name"]["top"], (part, r)


def test_sampler_selects_are_not_clipped(server, scored, page):
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/runs/{scored}")
    page.wait_for_selector("#sampler-checkpoint:not([disabled])")
    for select in ("#sampler-checkpoint", "#sampler-mode"):  # the longest option fits in the select
        assert page.eval_on_selector(select, """(s) => { const c = document.createElement('canvas').getContext('2d');
            c.font = getComputedStyle(s).font;
            return Math.max(...[...s.options].map((o) => c.measureText(o.text).width)) + 40 <= s.clientWidth; }"""), select
    no_sideways_scroll(page)


def test_run_list_on_a_phone_gives_a_long_name_room_and_big_tap_targets(server, scored, page):
    long_run = write_run(server.runs_dir, 10)
    assert server.client.patch(f"/api/runs/{long_run}", json={"name": LONG}).status_code == 200
    page.set_viewport_size(PHONE)
    page.goto(server.url + "/")
    row = page.locator(f"#runs-table tr[data-run-id='{long_run}']")
    row.locator(".run-link").wait_for()
    name, whole = row.locator("td.name").evaluate(BOX), row.evaluate(BOX)
    assert name["width"] > 0.5 * whole["width"], (name, whole)
    no_sideways_scroll(page)
    assert_tappable(page, ".topbar nav a, .topbar button")
    boxes = page.eval_on_selector_all("#runs-table .pick-target", f"(es) => es.map({BOX})")
    assert boxes and all(b["width"] >= TAP and b["height"] >= TAP for b in boxes), boxes
    page.locator(f"tr[data-run-id='{long_run}'] .pick-target").click()  # the label ticks the box
    assert page.locator(f"tr[data-run-id='{long_run}'] input.pick-run").is_checked()


def test_comparison_on_a_phone_wraps_long_run_names(server, page):
    ids = stored_runs(server.runs_dir)
    assert server.client.patch(f"/api/runs/{ids[1]}", json={"name": LONG}).status_code == 200
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/compare?runs={ids[0]},{ids[1]}")
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
    page.wait_for_selector("#config-diff tbody tr")
    no_sideways_scroll(page)
    table, wrap = page.locator("#config-diff").evaluate(BOX), page.locator("#config-diff").evaluate(f"(t) => ({BOX})(t.parentElement)")
    assert table["right"] <= wrap["right"] + 0.5, (table, wrap)  # every column in view, none behind a scroll
    series = page.locator("#loss-chart .u-legend .u-series", has_text=LONG).first
    marker, label = series.locator(".u-marker").evaluate(BOX), series.locator(".u-label").evaluate(
        "(e) => { const r = e.getClientRects()[0]; return {top: r.top}; }")
    assert label["top"] < marker["bottom"], (marker, label)  # the name starts beside its colour, not under it
    assert_tappable(page, ".png-button")


CONTRAST = """(e) => {  // WCAG contrast of an element's text against its background over the card behind it
  const rgba = (c) => c.match(/[\\d.]+/g).map(Number);
  const over = (top, under) => { const a = top[3] ?? 1; return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)); };
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const card = rgba(getComputedStyle(e.closest('.card')).backgroundColor);
  const bg = over(rgba(getComputedStyle(e).backgroundColor), card), fg = over(rgba(getComputedStyle(e).color), bg);
  const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_alert_badge_is_readable_in_either_theme(server, page, scheme):
    run_id = write_run(server.runs_dir, 10)
    add_alert(server.runs_dir, run_id, "oscillation", 5)
    page.emulate_media(color_scheme=scheme)
    page.goto(server.url + "/")
    badge = page.locator(f"tr[data-run-id='{run_id}'] .alert-badge")
    badge.wait_for()
    assert badge.evaluate(CONTRAST) >= 4.5


SLIDERS = {"run": ["#smoothing", "#smoothing-d", "#smoothing-grad", "#epoch-slider"], "compare": ["#smoothing", "#grid-epoch"]}


def open_compare(server, page, ids) -> None:
    page.goto(f"{server.url}/compare?runs={','.join(map(str, ids))}")
    page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")


def test_sliders_and_checkboxes_on_a_phone_are_big_enough_to_tap(server, scored, page):
    page.set_viewport_size(PHONE)
    page.goto(f"{server.url}/runs/{scored}")
    page.wait_for_selector("#epoch-slider:not([disabled])")
    assert_tappable(page, ", ".join(SLIDERS["run"]))
    assert_checkbox_tappable(page, "#log-y")
    no_sideways_scroll(page)
    open_compare(server, page, stored_runs(server.runs_dir)[:2])
    assert_tappable(page, ", ".join(SLIDERS["compare"]))
    assert_checkbox_tappable(page, "#config-all")
    no_sideways_scroll(page)
    page.goto(server.url + "/")
    page.wait_for_selector("#field-download")
    assert_checkbox_tappable(page, "#field-download")


def test_sliders_on_a_laptop_keep_their_size(server, scored, page):
    page.goto(f"{server.url}/runs/{scored}")
    page.wait_for_selector("#epoch-slider:not([disabled])")
    found = heights(page, ", ".join(SLIDERS["run"]))
    assert found and all(h < 24 for h in found.values()), found


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 800}], ids=["phone", "laptop"])
def test_quality_chart_has_no_empty_band_and_log_y_lines_up_with_smoothing(server, scored, page, viewport):
    page.set_viewport_size(viewport)
    page.goto(f"{server.url}/runs/{scored}")
    page.wait_for_function("document.querySelectorAll('#quality-chart .u-legend .u-value')[1]?.textContent.trim() > '0'")
    gap = page.locator("#quality-chart").evaluate("(e) => e.getBoundingClientRect().bottom - e.querySelector('.uplot').getBoundingClientRect().bottom")
    assert 0 <= gap <= 4, gap
    if viewport == PHONE:
        return  # "log y" and the smoothing slider are on lines of their own there
    text = """(e) => { const t = [...e.childNodes].find((n) => n.nodeType === 3 && n.textContent.trim());
        const range = document.createRange(); range.selectNodeContents(t); return range.getBoundingClientRect().bottom; }"""
    log_y, smoothing = page.locator("label[for=log-y]").evaluate(text), page.locator("label[for=smoothing]").evaluate(text)
    assert abs(log_y - smoothing) < 1, (log_y, smoothing)


def test_compare_png_buttons_stay_beside_their_titles_on_a_phone(server, page):
    page.set_viewport_size(PHONE)
    open_compare(server, page, stored_runs(server.runs_dir)[:2])
    for head in page.locator(".charts-card .card-head").all():
        title, button = head.locator("h2").evaluate(BOX), head.locator(".png-button").evaluate(BOX)
        assert button["top"] < title["bottom"] and button["left"] >= title["right"] - 1, (title, button)
        assert button["right"] <= head.evaluate(BOX)["right"] + 0.5, button
    no_sideways_scroll(page)


def test_compare_says_live_only_next_to_runs_that_can_still_change(server, page):
    ended, running = stored_runs(server.runs_dir)[:2]
    set_status(server.runs_dir, ended, "cancelled")
    set_status(server.runs_dir, running, "running")  # no worker: nothing marks it otherwise while the server runs
    open_compare(server, page, [ended, running])
    page.locator(f"#compare-legend li[data-run-id='{running}'] .conn.live").wait_for()
    assert page.locator(f"#compare-legend li[data-run-id='{ended}'] .badge.cancelled").is_visible()
    assert page.locator(f"#compare-legend li[data-run-id='{ended}'] .conn").count() == 0
