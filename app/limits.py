"""What bounds the cost of one request: the size of its body.

The largest body the API takes is a run's config or a note of 10,000 characters, a few KiB. A body over MAX_BODY_BYTES
is refused with 413 from its Content-Length, before a byte of it is read, and a chunked one (no Content-Length) as soon
as what was read passes the limit, so a client can never make the server hold a large body in memory.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
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
