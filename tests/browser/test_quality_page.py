"""Sample quality in Chromium: the run list shows the latest and best SWD and FID; the run page marks the best-FID
checkpoint with a badge and its label, and the FID legend says the resolution FID was computed at."""

from __future__ import annotations

from app.storage.db import Checkpoint, Run, Sample, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run
from trainer.protocol import BEST


def add_quality(runs_dir, run_id: int) -> None:
    """Three scored epochs, the best FID at epoch 2, its checkpoint pair on disk and registered."""
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        run = s.get(Run, run_id)
        run.swd, run.best_swd, run.fid, run.best_fid, run.fid_at = 80.5, 75.2, 45.0, 41.2, "75 px, CPU"
        for epoch, swd, fid in ((1, 90.0, 50.0), (2, 75.2, 41.2), (3, 80.5, 45.0)):
            s.add(Sample(run_id=run_id, epoch=epoch, name=f"epoch_{epoch:04d}.png", swd=swd, fid=fid, kid=0.01))
        folder = runs_dir / str(run_id) / "checkpoints"
        folder.mkdir(parents=True)
        for name in (*BEST, "netg.pth"):
            (folder / name).write_bytes(b"weights")
            s.add(Checkpoint(run_id=run_id, name=name, size=7, epoch=2 if name in BEST else 3, step=None))
    engine.dispose()


def test_quality_on_the_list_and_the_best_checkpoint_on_the_run_page(server, page):
    run_id = write_run(server.runs_dir, 100)
    add_quality(server.runs_dir, run_id)
    unscored = write_run(server.runs_dir, 100)

    page.goto(server.url + "/")
    line = page.locator(f"tr[data-run-id='{run_id}'] .quality")
    line.wait_for()
    text = line.text_content()
    assert "SWD 80.5" in text and "best 75.2" in text and "FID 45.0" in text and "best 41.2" in text, text
    assert page.locator(f"tr[data-run-id='{unscored}'] .quality").text_content() == ""

    page.goto(f"{server.url}/runs/{run_id}")
    best = page.locator("#checkpoints li", has=page.locator(".badge.best"))
    best.first.wait_for()
    assert best.count() == 2  # G and D
    assert "best FID 41.2 (epoch 2)" in best.first.text_content()
    assert page.locator("#checkpoints li").first.locator("a").text_content() == "netg.pth"  # the latest stays first
    legend = page.locator("#quality-chart .u-legend")
    page.wait_for_function("document.querySelector('#quality-chart .u-legend').textContent.includes('FID (75 px, CPU)')")
    assert "FID (75 px, CPU)" in legend.text_content()


def test_the_fid_axis_has_no_values_until_a_run_has_a_fid(server, page):
    """SWD every epoch but no FID (its time budget allowed none): the FID axis shows no made-up 0..2."""
    swd_only = write_run(server.runs_dir, 100)
    engine = make_engine(f"sqlite:///{server.runs_dir / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        s.add(Sample(run_id=swd_only, epoch=1, name="epoch_0001.png", swd=90.0))
    engine.dispose()
    page.goto(f"{server.url}/runs/{swd_only}")
    page.wait_for_function("window.ganboard.qualityEpochs() === 1")
    assert page.evaluate("window.ganboard.fidTicks([0, 1, 2])") == ["", "", ""]

    scored = write_run(server.runs_dir, 100)
    add_quality(server.runs_dir, scored)
    page.goto(f"{server.url}/runs/{scored}")
    page.wait_for_function("window.ganboard.qualityEpochs() === 3")
    assert page.evaluate("window.ganboard.fidTicks([40, 45, 50])") == ["40", "45", "50"]
