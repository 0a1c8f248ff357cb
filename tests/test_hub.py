"""The live hub encodes each message once: every page queue holds the very same text."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from app.runs.hub import QUEUE_SIZE, RESYNC, Hub, frame


def test_every_page_gets_the_same_encoded_text():
    async def main():
        hub = Hub()
        pages = [hub.subscribe(7) for _ in range(3)]
        other = hub.subscribe(8)
        messages = [{"type": "batch", "rows": {"step": [4, 5], "loss_d": [1.0, None]}}, {"type": "run", "run": {"id": 7}}]
        hub.publish(7, messages)
        hub.publish(7, [{"type": "run", "run": {"id": 7, "step": 5}}])
        got = [[p.queue.get_nowait(), p.queue.get_nowait()] for p in pages]
        for a, b in zip(got[0], got[1]):
            assert a is b  # one object, encoded once, shared by every page
        assert json.loads(frame(got[2])) == [*messages, {"type": "run", "run": {"id": 7, "step": 5}}]  # one frame, in order
        assert [o.last_step for o in got[0]] == [5, None]
        assert other.queue.empty()

    run_in_own_thread(main())


def test_a_page_that_falls_behind_gets_a_resync_not_the_backlog():
    async def main():
        hub = Hub()
        slow = hub.subscribe(1)
        for step in range(1, QUEUE_SIZE + 2):
            hub.publish(1, [{"type": "batch", "rows": {"step": [step]}}])
        assert slow.stale and slow.queue.qsize() == 1 and slow.queue.get_nowait() is RESYNC

    run_in_own_thread(main())


def run_in_own_thread(coro) -> None:
    """Playwright's session-wide browser keeps an event loop running in the main thread: asyncio.run needs another."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()
