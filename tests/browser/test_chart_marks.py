"""The run page's chart marks in Chromium: where a real run was cancelled and where it was resumed, and the end of each
epoch scored with FID, each named in the key under the charts and added live, as its message arrives; and the words
around them: the FID being scored behind training, a Machine card with no sample after the run ended."""

from __future__ import annotations

from app.storage.db import Sample, make_engine, make_sessionmaker
from tests.browser.runs_in_db import write_run


def marks(page) -> dict:
    return page.evaluate("window.ganboard.marks()")


def test_a_cancelled_and_resumed_run_marks_both(server, page):
    run = server.create(epochs=1000)
    page.goto(f"{server.url}/runs/{run['id']}")
    page.wait_for_function("window.ganboard.pointCount() > 0")
    assert marks(page)["events"] == []
    page.click("#cancel-button")
    page.wait_for_selector("#status.cancelled")
    page.wait_for_function("window.ganboard.marks().events.length === 1")  # live: no reload
    ((label, stopped),) = marks(page)["events"]
    assert label == "cancelled" and stopped > 0
    assert server.run(run["id"])["stops"] == [{"attempt": 1, "step": stopped, "status": "cancelled"}]

    page.click("#resume-button")
    page.wait_for_function("window.ganboard.marks().events.length === 2")
    cancel, resume = marks(page)["events"]
    assert cancel == ["cancelled", stopped] and resume[0] == "resumed" and 0 <= resume[1] <= stopped  # from its checkpoint
    key = page.text_content("#mark-key")
    assert f"cancelled at step {stopped:,}" in key and f"resumed at step {resume[1]:,}" in key, key
    assert marks(page) == page.evaluate("window.ganboard.marks('grad')")  # every step chart has them
    server.client.post(f"/api/runs/{run['id']}/cancel")


def test_the_epochs_scored_with_fid_are_marked(server, page):
    """Five epochs of 40 steps, FID on epochs 2 and 4 in the database; epoch 5's arrives in a score message."""
    run_id = write_run(server.runs_dir, 200, per_epoch=40)
    engine = make_engine(f"sqlite:///{server.runs_dir / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        for epoch in range(1, 6):
            s.add(Sample(run_id=run_id, epoch=epoch, name=f"epoch_{epoch:04d}.png", swd=90.0 - epoch,
                         fid=50.0 - epoch if epoch in (2, 4) else None))  # fmt: skip
    engine.dispose()
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.marks().scored.length === 2")
    assert marks(page)["scored"] == [80, 160]  # the last steps of epochs 2 and 4
    assert "FID/KID scored at the end of epoch 2, 4" in page.text_content("#mark-key")

    page.evaluate("""window.ganboard.feed({type: "score", epoch: 5, checkpoints: null,
                      sample: {epoch: 5, name: "epoch_0005.png", url: "", swd: 85, fid: 44, kid: 0.01, diversity: null}})""")
    assert marks(page)["scored"] == [80, 160, 200]
    assert page.evaluate("window.ganboard.marks('d').scored") == [80, 160, 200]


def test_fid_scored_behind_training_says_both_epochs(server, page):
    run_id = write_run(server.runs_dir, 100)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.status() === 'completed'")
    shown = page.evaluate("""(run) => {  // read at once: the page then asks the server again, which says completed
        window.ganboard.feed({type: "run", run});
        return document.getElementById("progress-text").textContent;
      }""", {**server.run(run_id), "status": "running", "scoring": 17, "epoch": 22, "epoch_in_progress": 23})
    assert "FID of epoch 17 being scored (training is in epoch 23)" in shown


def test_the_machine_card_of_an_ended_run_without_samples_says_none_was_taken(server, page):
    run_id = write_run(server.runs_dir, 10)
    page.goto(f"{server.url}/runs/{run_id}")
    page.wait_for_function("window.ganboard.status() === 'completed'")
    page.wait_for_selector("#machine-empty:has-text('No machine sample was taken')")
    assert page.is_hidden("#speed-chart") and page.is_hidden("#usage-chart")  # no empty axes
    running = page.evaluate("""(run) => {  // read at once: the page then asks the server again, which says completed
        window.ganboard.feed({type: "run", run});
        return [document.getElementById("machine-empty").textContent, document.getElementById("speed-chart").hidden];
      }""", {**server.run(run_id), "status": "running"})
    assert running == ["The first machine sample comes a few seconds after the worker starts.", False]
