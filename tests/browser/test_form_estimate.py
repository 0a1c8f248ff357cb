"""The new-run form says how long the run would train on this machine before Start, from a run of the same shape on the
same kind of device; without one it says there is no estimate yet (the article preset on a CPU started without a word)."""

from __future__ import annotations

import sqlite3

from tests.browser.runs_in_db import write_run


def test_an_estimate_from_a_measured_run_of_the_same_shape(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector("#presets .preset[aria-pressed=true]")
    assert "No run of this shape (32px, ngf 32, ndf 32, batch 64) has trained on this machine's CPU" in page.text_content("#estimate")

    run_id = write_run(server.runs_dir, 20)  # the quick preset's shape
    with sqlite3.connect(server.runs_dir / "ganboard.db") as db:  # 2,900 steps of 64 in 290 s: 640 images/s
        db.execute("UPDATE runs SET device = 'cpu', step = 2900, ran_seconds = 290 WHERE id = ?", [run_id])
    page.reload()
    page.wait_for_function("document.getElementById('estimate').textContent.startsWith('About')")
    # 70 epochs of the emoji set's 1,860 images in whole batches of 64 (29 a epoch): 129,920 images at 640 images/s
    assert page.text_content("#estimate").startswith("About 3m 23s of training on this machine's CPU (129,920 images at 640 images/s")
    page.click("#presets .preset[data-preset=article]")
    assert page.text_content("#estimate").startswith("No run of this shape (96px, ngf 64, ndf 64, batch 256)")
