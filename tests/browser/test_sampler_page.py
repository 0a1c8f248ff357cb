"""The run page's "Sample from a checkpoint" card in real Chromium: a grid from a finished run's checkpoint loads, the
walk shows its fields, and a bad count shows the server's reason."""

from __future__ import annotations


def test_generate_a_grid_from_the_page(server, page):
    run = server.create()
    server.wait_status(run["id"], "completed", timeout=600)
    page.goto(f"{server.url}/runs/{run['id']}")
    page.wait_for_selector("#sampler-button:not([disabled])")
    options = page.eval_on_selector_all("#sampler-checkpoint option", "os => os.map(o => o.value)")
    assert options[0] == "netg.pth" and all(o.startswith("netg") for o in options) and len(options) >= 2

    page.select_option("#sampler-mode", "walk")
    assert page.is_visible("#sampler-steps") and not page.is_visible("#sampler-count")
    page.select_option("#sampler-mode", "grid")

    page.fill("#sampler-count", "300")
    page.click("#sampler-button")
    page.wait_for_selector("#sampler-error:not([hidden])")
    assert "count:" in page.text_content("#sampler-error") and "256" in page.text_content("#sampler-error")

    page.select_option("#sampler-checkpoint", options[-1])
    page.fill("#sampler-count", "16")
    page.fill("#sampler-seed", "42")
    page.click("#sampler-button")
    page.wait_for_function("(img => img.complete && img.naturalWidth > 0)(document.getElementById('sampler-img'))")
    size = "(img => [img.naturalWidth, img.naturalHeight])(document.getElementById('sampler-img'))"
    width, height = page.evaluate(size)
    assert (width, height) == (8 * 34 + 2, 2 * 34 + 2)  # 16 images of 32 px, 8 a row
    assert page.is_hidden("#sampler-error")
    assert "made on cpu" in page.text_content("#sampler-status")
    assert page.get_attribute("#sampler-button", "disabled") is None
    link = page.locator("#sampler-downloads a")
    assert link.count() == 1 and link.get_attribute("download") == f"run-{run['id']}-grid-seed-42.png"
    assert "Download PNG (" in link.text_content() and "KB)" in link.text_content()  # the result's size
