"""Fan-out of live messages to the open run pages.

Each page has a bounded queue. Publishing never waits: a page whose queue is full is marked stale and its backlog is
dropped; its sender then sends a fresh snapshot instead. So one slow page holds up neither the worker nor other pages.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

QUEUE_SIZE = 512


@dataclass(eq=False)
class Page:
    run_id: int
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    stale: bool = False

    def put(self, msg: dict) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.stale = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait({"type": "resync"})  # wakes the sender, which sends a snapshot


class Hub:
    def __init__(self) -> None:
        self.pages: dict[int, set[Page]] = defaultdict(set)

    def subscribe(self, run_id: int) -> Page:
        page = Page(run_id)
        self.pages[run_id].add(page)
        return page

    def unsubscribe(self, page: Page) -> None:
        self.pages[page.run_id].discard(page)
        if not self.pages[page.run_id]:
            del self.pages[page.run_id]

    def publish(self, run_id: int, messages: list[dict]) -> None:
        for page in list(self.pages.get(run_id, ())):
            for msg in messages:
                page.put(msg)
