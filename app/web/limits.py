"""What bounds the cost of a request and of a connection: the size of a body, open files, idle and concurrent
connections.

The largest body the API takes is a run's config or a note of 10,000 characters, a few KiB. A body over MAX_BODY_BYTES
is refused with 413 from its Content-Length, before a byte of it is read, and a chunked one (no Content-Length) as soon
as what was read passes the limit, so a client can never make the server hold a large body in memory.
"""

from __future__ import annotations

import resource

from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1 << 20
CLOSE = {"Connection": "close"}  # the rest of the body is never read: the connection cannot carry another request


def _too_large(limit: int) -> str:
    return f"the body is over the {limit:,} bytes this server accepts"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > self.limit:  # the server (h11) has refused a malformed one already
            return await JSONResponse({"detail": _too_large(self.limit)}, 413, CLOSE)(scope, receive, send)
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.limit:  # an HTTPException: FastAPI passes it on from a body read, the app's handler answers
                raise HTTPException(413, _too_large(self.limit), CLOSE)
            return message

        await self.app(scope, limited, send)


KEEP_ALIVE_SECONDS = 5.0  # an idle connection, before its first request or between two, is closed after this long
MAX_CONCURRENCY = 1000  # connections and requests at once (page and worker websockets count); past it, 503


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one (each connection is an open file; the soft limit is often
    1,024); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an unlimited hard limit is more than the kernel allows: keep the soft one
            pass
    return soft


class IdleClosingProtocol(HttpToolsProtocol):
    """uvicorn's protocol, except that a connection that sends nothing is closed after the keep-alive timeout too
    (uvicorn times out only the wait between two requests): idle connections held open cannot use up the server's
    open files."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


def server_options(open_files: int) -> dict:
    """uvicorn's options for this server, under a limit of `open_files`: a 503 for requests past the concurrency limit,
    which stays well under the open files, rather than a failed accept."""
    return dict(http=IdleClosingProtocol, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                limit_concurrency=max(8, min(MAX_CONCURRENCY, open_files // 2)))  # fmt: skip
