"""Health alerts in Chromium: an open alert is a badge on the run list (its message as the tooltip), a card with message
and advice on the run page, and a red line at its step on every chart; a cleared one is listed, not badged."""

from __future__ import annotations

from app.storage.db import Alert, Run, make_engine, make_sessionmaker
from app.storage.health import KINDS
from tests.browser.runs_in_db import write_run


def add_alert(runs_dir, run_id: int, kind: str, step: int, cleared_step: int | None = None) -> None:
    engine = make_engine(f"sqlite:///{runs_dir / 'ganboard.db'}")
    with make_sessionmaker(engine).begin() as s:
        what, advice = KINDS[kind]
        run = s.get(Run, run_id)
        run.alerts.append(Alert(kind=kind, step=step, epoch=1, message=f"{what} (test)", advice=advice,
                                cleared_step=cleared_step))  # fmt: skip
    engine.dispose()


def test_an_alert_shows_on_the_list_and_on_its_run_page(server, page):
    run_id = write_run(server.runs_dir, 1000)
    add_alert(server.runs_dir, run_id, "oscillation", 300, cleared_step=500)
    add_alert(server.runs_dir, run_id, "d_wins", 800)
    quiet = write_run(server.runs_dir, 100)

    page.goto(server.url + "/")
    badge = page.locator(f"tr[data-run-id='{run_id}'] .alert-badge")
    badge.wait_for()
    assert badge.text_content() == "⚠ d wins"  # the open one only
    assert "G gets little gradient" in badge.get_attribute("title")
    assert page.locator(f"tr[data-run-id='{quiet}'] .alert-badge").is_hidden()

    page.goto(f"{server.url}/runs/{run_id}")
    card = page.locator("#alerts-card")
    card.wait_for()
    items = page.locator("#alerts li")
    assert items.count() == 2
    assert "d wins at step 800" in items.nth(0).text_content()  # newest first
    assert "Try: Lower lr_d" in items.nth(0).text_content()
    assert "cleared at step 500" in items.nth(1).text_content()
    steps = page.evaluate("window.ganboard.alertSteps()")
    assert steps == {"loss": [800, 300], "d": [800, 300], "grad": [800, 300]}
    assert page.locator("#grad-chart canvas").count() == 1  # the gradient-norm chart is there
