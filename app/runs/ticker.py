"""The one shape of the server's background loops (the supervisor's, the Optuna sweeps'): a blocking `tick` in a
worker thread every `seconds`, sooner when `wakeup` is set; a tick that fails is logged and the next one comes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)


async def every(seconds: float, tick: Callable[[], None], what: str, wakeup: asyncio.Event | None = None) -> None:
    wakeup = wakeup or asyncio.Event()
    while True:
        try:
            await run_in_threadpool(tick)
        except Exception:
            log.exception("%s tick failed", what)
        try:
            await asyncio.wait_for(wakeup.wait(), seconds)
        except TimeoutError:
            pass
        wakeup.clear()
