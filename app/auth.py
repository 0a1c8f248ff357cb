"""Access control for a server with GANBOARD_TOKEN set (required when it listens beyond loopback).

Every page, API route, download and page websocket then needs the token: as `Authorization: Bearer <token>` (API
clients), as `?token=` (scripts), or as the HttpOnly, SameSite=Strict cookie the login form sets (browsers). The cookie
is never sent on cross-site requests, and a cookie-authenticated POST or DELETE from another origin is refused, so
form posts are safe from cross-site request forgery. Workers authenticate their own socket with their per-run token
(see app.live), which opens nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from html import escape
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "ganboard_session"
OPEN_PREFIXES = ("/login", "/static/", "/ws/worker/")
router = APIRouter(include_in_schema=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself never sits in the browser."""
    return hmac.new(token.encode(), b"ganboard-session", hashlib.sha256).hexdigest()


class TokenMiddleware:
    """Pure ASGI, so that websockets are guarded as well as HTTP."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token, self.session = app, token, session_value(token)

    def _credential(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:], self.token):
            return "bearer"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query and hmac.compare_digest(query["token"][0], self.token):
            return "query"
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value, self.session):
                return "cookie"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        how = self._credential(scope)
        if how is None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": "token required"})
            path = scope["path"]
            if path.startswith("/api") or path in ("/docs", "/openapi.json"):
                response = JSONResponse({"detail": "a token is required: Authorization: Bearer <token>"}, 401)
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            return await response(scope, receive, send)
        if how == "cookie" and scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            if origin and urlsplit(origin).netloc != headers.get(b"host", b"").decode("latin-1"):
                return await JSONResponse({"detail": "cross-site request refused"}, 403)(scope, receive, send)
        return await self.app(scope, receive, send)


def _login_page(next_path: str, error: str = "") -> str:
    message = f'<p class="form-error">{escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Log in · GANboard</title>
<link rel="icon" href="/static/favicon.svg"><link rel="stylesheet" href="/static/style.css"></head>
<body><main><section class="card login"><h1>GANboard</h1><p>This server needs its token (GANBOARD_TOKEN).</p>
<form method="post" action="/login"><input type="hidden" name="next" value="{escape(next_path)}">
<label class="field"><span>token</span><input name="token" type="password" autofocus autocomplete="current-password"></label>
{message}<button class="primary" type="submit">Log in</button></form></section></main></body></html>"""


def _safe_next(path: str) -> str:
    return path if path.startswith("/") and not path.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> str:
    return _login_page(_safe_next(next))


@router.post("/login")
def login(request: Request, token: str = Form(""), next: str = Form("/")):
    expected = request.app.state.settings.token
    if not expected:
        return RedirectResponse(_safe_next(next), status_code=303)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return HTMLResponse(_login_page(_safe_next(next), "That token is not right."), status_code=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, session_value(expected), httponly=True, samesite="strict", path="/")
    return response
