"""Make docs/screenshot.png: a live run page in Chromium, a few epochs into the quick preset on the emoji set.

Run: `.venv/bin/python scripts/screenshot.py [--epochs 8]` (needs /usr/bin/chromium; about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402
from tests.harness import scratch_server, wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="epochs to wait for before the picture")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "screenshot.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with scratch_server() as server:
        run = server.client.post("/api/runs", json={"name": "emoji-quick", "config": {"device": "cpu"}}).json()
        wait_for(lambda: server.run(run["id"])["epoch"] >= args.epochs, 600, what=f"{args.epochs} epochs")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.url}/runs/{run['id']}")
            page.wait_for_function("document.getElementById('sample-img').naturalWidth > 0")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.output))
            browser.close()
        server.client.post(f"/api/runs/{run['id']}/cancel")
        server.wait_status(run["id"], "cancelled")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
