"""Refuses what another web site can make a browser send here, token or no token.

A page on any site can make the browser POST a form or open a websocket to 127.0.0.1, and with DNS rebinding
(evil.example re-resolved to 127.0.0.1) it can even read the answers. So, in every mode:

- the `Host` header must name this server: the address it is bound to, the loopback names when it listens on loopback
  (or on every address), each on the port it listens on, or a name in GANBOARD_ALLOWED_HOSTS (any port: a reverse
  proxy may stand in front); anything else is 400 "host not allowed";
- a POST, PUT, PATCH or DELETE, and any websocket, is refused when a browser marks it as coming from another origin
  (`Origin` not this host, or `Sec-Fetch-Site: cross-site`/`same-site`): 403 over HTTP, close 1008 for a websocket.
  Clients that are not browsers (workers, scripts) send no `Origin` and pass.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.web.auth import is_loopback

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


def split_host(host: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port` or a bare name -> (lower-case name without brackets, port or None)."""
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, port = host.split(":")
    return name.lower().rstrip("."), int(port) if port.isdigit() else None


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


class GuardMiddleware:
    """Pure ASGI, so that websockets are guarded as well as HTTP; installed outside the token check."""

    def __init__(self, app: ASGIApp, bind_host: str, port: int, allowed_hosts: list[str]):
        self.app, self.port = app, port
        self.bind = bind_host.strip("[]").lower()
        self.configured = {split_host(h)[0] for h in allowed_hosts}
        self.names = set() if self.bind in WILDCARDS else {self.bind}
        if self.bind in WILDCARDS or is_loopback(self.bind):
            self.names.update(LOOPBACK_NAMES)

    def host_allowed(self, host: str, scope: Scope) -> bool:
        name, port = split_host(host)
        if name in self.configured:  # on any port: a reverse proxy or a forwarded port may stand in front
            return True
        local, local_port = scope.get("server") or (None, None)
        if port is None:
            port = 443 if scope.get("scheme") in ("https", "wss") else 80
        if port not in (self.port, local_port):
            return False
        if any(_same_address(name, allowed) for allowed in self.names):
            return True
        # Listening on every address (only ever with a token): the local address this connection arrived on.
        return self.bind in WILDCARDS and isinstance(local, str) and _same_address(name, local)

    @staticmethod
    def cross_origin(headers: dict[bytes, bytes], host: str) -> bool:
        origin = headers.get(b"origin", b"").decode("latin-1")
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        return (bool(origin) and urlsplit(origin).netloc.lower() != host.lower()) or site in ("cross-site", "same-site")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        websocket = scope["type"] == "websocket"
        if not self.host_allowed(host, scope):
            if websocket:
                return await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return await JSONResponse({"detail": "host not allowed"}, 400)(scope, receive, send)
        if (websocket or scope["method"] not in SAFE_METHODS) and self.cross_origin(headers, host):
            if websocket:
                return await send({"type": "websocket.close", "code": 1008, "reason": "cross-site request refused"})
            return await JSONResponse({"detail": "cross-site request refused"}, 403)(scope, receive, send)
        return await self.app(scope, receive, send)
