"""Time to first chart paint of a run page in Chromium: a 200,000-batch run against a 1,000-batch one, of the
comparison page of five 200,000-batch runs (until every run's curves are drawn: the `first-compare-paint` mark), and of
the sweep page of 100 finished runs of 2,000 steps (its table and plots drawn: `first-sweep-paint`).

The runs are written into the database of a real server (through the ORM); each page is opened several times,
alternating, and the script prints the median milliseconds from navigation to the first paint, and the ratios.
Run: `.venv/bin/python bench/first_paint.py [--rounds 5]` (needs /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser.conftest import ARGS, CHROMIUM  # noqa: E402
from tests.browser.runs_in_db import write_run  # noqa: E402
from tests.browser.sweep_in_db import write_sweep  # noqa: E402
from tests.harness import scratch_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["sweep"], help="time the sweep page alone (and the 1,000-batch run page)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with scratch_server() as server:
        small = write_run(server.runs_dir, 1_000)
        cases = {"1,000 batches": (f"/runs/{small}", "first-chart-paint")}  # name: (path, the mark that says it painted)
        if not args.only:
            large = write_run(server.runs_dir, 200_000)
            five = [large, *(write_run(server.runs_dir, 200_000) for _ in range(4))]
            cases["200,000 batches"] = (f"/runs/{large}", "first-chart-paint")
            cases["compare 5 x 200,000 steps"] = (f"/compare?runs={','.join(map(str, five))}", "first-compare-paint")
        lrs = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3]
        sweep, _ = write_sweep(server.runs_dir, lrs, [1, 2, 3, 4, 5], seeds=4, batches=2_000)  # 5 x 5 x 4 = 100 runs
        cases["sweep of 100 x 2,000 steps"] = (f"/sweeps/{sweep}", "first-sweep-paint")
        times: dict[str, list[float]] = {name: [] for name in cases}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.rounds):
                for name, (path, mark) in cases.items():
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.goto(server.url + path)
                    page.wait_for_function(f"performance.getEntriesByName('{mark}').length > 0", timeout=120_000)
                    times[name].append(page.evaluate(f"performance.getEntriesByName('{mark}')[0].startTime"))
                    page.close()
            browser.close()
    median = {name: statistics.median(v) for name, v in times.items()}
    small = median["1,000 batches"]
    print(f"time to first chart paint, median of {args.rounds} (Chromium {CHROMIUM}):")
    print(f"  1,000 batches:             {small:7.0f} ms")
    sweep_page = median["sweep of 100 x 2,000 steps"]
    print(f"  sweep of 100 x 2,000 steps: {sweep_page:6.0f} ms   ratio {sweep_page / small:.2f} (to 1,000 batches)")
    if args.only:
        return
    large, compare = median["200,000 batches"], median["compare 5 x 200,000 steps"]
    print(f"  200,000 batches:           {large:7.0f} ms   ratio {large / small:.2f}")
    print(f"  compare 5 x 200,000 steps: {compare:7.0f} ms   ratio {compare / small:.2f} (to 1,000 batches)")


if __name__ == "__main__":
    main()
