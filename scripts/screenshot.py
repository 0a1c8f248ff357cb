"""Make the screenshots under docs/: the run list, a live run page and the comparison of two runs, at a laptop's 1280 px
and a phone's 390 px, a few epochs into the quick preset on the emoji set (one run with the article's learning rates, one
with D's ten times higher). docs/screenshot.png (the run page at 1280 px) is the README's.

Run: `.venv/bin/python scripts/screenshot.py [--epochs 8]` (needs /usr/bin/chromium; a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402
from tests.harness import scratch_server, wait_for  # noqa: E402

SIZES = {"": (1280, 800), "-390": (390, 844)}  # file name suffix: viewport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs to wait for before the pictures")
    parser.add_argument("--output", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with scratch_server(GANBOARD_MAX_CONCURRENT="2") as server:
        run = server.client.post("/api/runs", json={"name": "emoji-quick", "config": {"device": "cpu"}}).json()
        other = server.client.post("/api/runs", json={"name": "emoji-quick lr_d x10", "config": {"device": "cpu", "lr_d": 0.002}}).json()
        for r in (run, other):
            wait_for(lambda: server.run(r["id"])["epoch"] >= args.epochs, 900, what=f"{args.epochs} epochs")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for suffix, (width, height) in SIZES.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"{server.url}/runs/{run['id']}")
                page.wait_for_function("document.getElementById('sample-img').naturalWidth > 0")
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.output / f"screenshot{suffix}.png"), full_page=bool(suffix))
                page.goto(server.url + "/")
                page.wait_for_selector(f'#runs-table tr[data-run-id="{run["id"]}"] img:not([hidden])')
                page.wait_for_selector("#field-dataset")
                page.screenshot(path=str(args.output / f"screenshot-list{suffix}.png"), full_page=bool(suffix))
                page.goto(f"{server.url}/compare?runs={run['id']},{other['id']}")
                page.wait_for_function("performance.getEntriesByName('first-compare-paint').length > 0")
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.output / f"screenshot-compare{suffix}.png"), full_page=True)
                page.close()
            browser.close()
        for r in (run, other):
            server.client.post(f"/api/runs/{r['id']}/cancel")
            server.wait_status(r["id"], "cancelled")
    print(f"wrote the screenshots in {args.output}")


if __name__ == "__main__":
    main()
