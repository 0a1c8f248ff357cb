"""The two websockets: workers report into `/ws/worker/{id}`, run pages watch `/ws/runs/{id}`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from app.runs.hub import PAGE_INTERVAL, RESYNC, frame
from app.storage import ingest, journal, json_view
from app.storage.db import Run, hash_token
from app.web.deps import RunId
from trainer import protocol

log = logging.getLogger(__name__)
router = APIRouter()


def _bearer(ws: WebSocket) -> str:
    header = ws.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ws.query_params.get("token", "")


@router.websocket("/ws/worker/{run_id}")
async def worker_socket(ws: WebSocket, run_id: RunId) -> None:
    """Store each message once per (run, attempt, seq), in one transaction, then acknowledge it."""
    state = ws.app.state

    def stored_token() -> str | None:
        with state.sessions() as s:
            run = s.get(Run, run_id)
            return run.token if run else None

    expected = await run_in_threadpool(stored_token)
    if not expected or not hmac.compare_digest(expected, hash_token(_bearer(ws))):
        await ws.close(code=1008, reason="unknown run or wrong token")
        return
    if run_id in json_view.replaying:  # the start-up replay has its journal: a thread here would only wait for it
        await ws.close(code=1013, reason="the server is replaying this run's journal; try again shortly")
        return
    run_dir = state.settings.runs_dir / str(run_id)
    if await run_in_threadpool(journal.replay, state.sessions, run_id, run_dir):  # what it journalled before connecting
        state.hub.resync(run_id)
    await ws.accept()

    try:
        while True:
            msg = protocol.parse_message(await ws.receive_text())
            _, out = await run_in_threadpool(ingest.store, state.sessions, run_id, run_dir, [msg])
            if out:
                state.hub.publish(run_id, out)
            ack = protocol.Ack(seq=msg.seq, threads=state.supervisor.cpu_threads(run_id))
            await ws.send_text(ack.model_dump_json(exclude_none=True))
            if msg.type == "status" and msg.status != protocol.Status.RUNNING:
                state.supervisor.poke()
            elif msg.type == "stopping":
                state.supervisor.stopping(run_id, msg.attempt, msg.step)
    except WebSocketDisconnect:
        pass
    except (LookupError, ValueError) as e:  # a malformed message (ValidationError is a ValueError) or a deleted run
        log.warning("run %s: bad worker message: %s", run_id, e)
        await ws.close(code=1003)


def newest(snap: dict, after: int) -> int:
    """The newest step a snapshot holds (the last bucket's last step), or `after` when it holds none."""
    return max([after, *snap["metrics"]["step"][-1:]])


async def _until_closed(ws: WebSocket) -> None:
    """Pages send nothing we need; reading is how a closed page is noticed."""
    try:
        while True:
            await ws.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


@router.websocket("/ws/runs/{run_id}")
async def page_socket(ws: WebSocket, run_id: RunId) -> None:
    """A snapshot (history bucketed, or only after `?after=S` for a page that reconnects), then live messages in frames
    of the text the hub encoded once for every page (app/runs/hub.py)."""
    state = ws.app.state
    try:
        after = min(max(0, int(ws.query_params.get("after", 0))), 2**63 - 1)  # SQLite integers are 64-bit
    except ValueError:
        after = 0
    page = state.hub.subscribe(run_id)  # before the snapshot, so nothing falls between the two

    def make_snapshot(after: int) -> dict | None:
        with state.sessions() as s:
            run = s.get(Run, run_id)
            return json_view.snapshot(s, run, after) if run else None

    async def send_live(last_step: int) -> None:
        clock = asyncio.get_running_loop().time
        sent_at = -PAGE_INTERVAL
        while True:
            queued = [await page.queue.get()]
            await asyncio.sleep(sent_at + PAGE_INTERVAL - clock())  # at most one frame per PAGE_INTERVAL (app/runs/hub.py)
            while not page.queue.empty():
                queued.append(page.queue.get_nowait())
            if page.stale or RESYNC in queued:  # it fell behind, or a replay stored what it missed: a fresh snapshot
                page.stale = False
                snap = await run_in_threadpool(make_snapshot, last_step)
                if snap is None:
                    return
                await ws.send_text(json.dumps(snap))
                last_step = newest(snap, last_step)
                continue
            fresh = [o for o in queued if o.last_step is None or o.last_step > last_step]  # not already in the snapshot
            last_step = max([last_step, *(o.last_step for o in fresh if o.last_step is not None)])
            if fresh:
                await ws.send_text(frame(fresh))
                sent_at = clock()

    try:
        snap = await run_in_threadpool(make_snapshot, after)
        if snap is None:
            await ws.close(code=1008, reason="unknown run")  # before accept: the page sees its handshake refused
            return
        await ws.accept()
        await ws.send_text(json.dumps(snap))
        # Two tasks for the connection's life (not one per message): whichever ends first, the page left or the run
        # was deleted, ends the other.
        tasks = {asyncio.create_task(send_live(newest(snap, after))), asyncio.create_task(_until_closed(ws))}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        state.hub.unsubscribe(page)
