"""GIF and WebP exports of a run's grids, built once and shared, one build at a time, off the request thread pool.

Sixty GIF exports of one run requested at once made sixty builds in the thread pool: the API stopped answering for
90 s and the server grew by 5.7 GiB (issue 20). Here a build is keyed by what it is made of (the run, the format, the
frame time, each grid's name, size and mtime): requests for the same key wait for one build; builds run on a thread
of their own, one at a time, so at most one run's frames are decoded at once and the request threads stay free; the
newest results are kept up to `CACHE_BYTES`, least recently used dropped first. An animation shows at most
`MAX_FRAMES` grids, evenly spaced from the first epoch to the last: Pillow holds every frame decoded while it encodes,
and a long run has thousands of epochs (a grid at 96 px is 1.8 MB decoded; 200 frames play for 40 s).
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

CACHE_BYTES = 64 * 2**20
MAX_FRAMES = 200


class Animations:
    def __init__(self, cache_bytes: int = CACHE_BYTES):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animation")
        self.building: dict[Hashable, asyncio.Future[bytes]] = {}
        self.done: OrderedDict[Hashable, bytes] = OrderedDict()
        self.cache_bytes = cache_bytes

    async def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """The animation for `key`: cached, the build already under way, or a new build queued behind the others."""
        if key in self.done:
            self.done.move_to_end(key)
            return self.done[key]
        if key not in self.building:
            future = asyncio.get_running_loop().run_in_executor(self.pool, build)
            self.building[key] = future
            future.add_done_callback(lambda f: self._keep(key, f))
        return await asyncio.shield(self.building[key])  # a client that leaves does not cancel the others' build

    def _keep(self, key: Hashable, future: asyncio.Future[bytes]) -> None:
        del self.building[key]
        if future.cancelled() or future.exception() is not None:
            return
        self.done[key] = future.result()
        while sum(map(len, self.done.values())) > self.cache_bytes and len(self.done) > 1:
            self.done.popitem(last=False)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def spaced(items: list, most: int = MAX_FRAMES) -> list:
    """At most `most` of `items`, evenly spaced, the first and the last among them."""
    if len(items) <= most:
        return list(items)
    return [items[round(k * (len(items) - 1) / (most - 1))] for k in range(most)]


def encode(frames: list, fmt: str, ms_per_epoch: int) -> bytes:
    """Frames (opened PIL images) as one animation, the last frame held a little longer."""
    durations = [max(20, min(ms_per_epoch, 5000))] * len(frames)
    durations[-1] = max(durations[-1], 1500)
    out = io.BytesIO()
    frames[0].save(out, format=fmt.upper(), save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return out.getvalue()
