"""Fan-out of live messages to the open run pages.

Each message is encoded once, when it is published: every page's queue gets the same `Outgoing`, and each page's
sender writes its text as it is. Each page has a bounded queue. Publishing never waits: a page whose queue is full is
marked stale and its backlog is dropped; its sender then sends a fresh snapshot instead. So one slow page holds up
neither the worker nor other pages, and 100 open pages cost one `json.dumps` per message, not 100.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field

QUEUE_SIZE = 512


@dataclass(frozen=True)
class Outgoing:
    """A message for the pages, as JSON text, with what a sender needs to know of it without parsing it again."""

    type: str
    text: str
    last_step: int | None = None  # a batch's newest step: a sender skips it when its snapshot already held that far

    @classmethod
    def encode(cls, msg: dict) -> Outgoing:
        steps = msg["rows"]["step"] if msg["type"] == "batch" else None
        return cls(msg["type"], json.dumps(msg), steps[-1] if steps else None)


RESYNC = Outgoing("resync", "")  # wakes a stale page's sender, which sends a snapshot


@dataclass(eq=False)
class Page:
    run_id: int
    queue: asyncio.Queue[Outgoing] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    stale: bool = False

    def put(self, msg: Outgoing) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.stale = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


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

    def resync(self, run_id: int) -> None:
        """Every open page of the run fetches a fresh snapshot (a journal replay stored what it had not seen)."""
        for page in list(self.pages.get(run_id, ())):
            page.put(RESYNC)

    def publish(self, run_id: int, messages: list[dict]) -> None:
        pages = list(self.pages.get(run_id, ()))
        if not pages:
            return
        encoded = [Outgoing.encode(msg) for msg in messages]
        for page in pages:
            for msg in encoded:
                page.put(msg)
