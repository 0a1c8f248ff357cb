"""Access control for a server with GANBOARD_TOKEN set (required when it listens beyond loopback).

Every page, API route, download and page websocket then needs the token: as `Authorization: Bearer <token>` (API
clients), as `?token=` (scripts), or as the HttpOnly, SameSite=Strict cookie the login form sets (browsers). The cookie
is never sent on cross-site requests, and app.web.guard refuses unsafe requests from other origins in every mode. Workers
authenticate their own socket with their per-run token (see app.web.live), which opens nothing else; they never see this
token. `?token=` never reaches the log: RedactTokens masks it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from html import escape
from urllib.parse import parse_qs, quote, quote_plus, unquote_plus

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
        """Compared as bytes (UTF-8): a non-ASCII token or guess is a plain match or mismatch, never a 500."""
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and _equal(auth[7:], self.token):
            return "bearer"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query and _equal(query["token"][0].encode(), self.token):
            return "query"
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode() and _equal(value, self.session):
                return "cookie"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        if self._credential(scope) is None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": "token required"})
            path = scope["path"]
            if path.startswith("/api") or path in ("/docs", "/openapi.json"):
                response = JSONResponse({"detail": "a token is required: Authorization: Bearer <token>"}, 401)
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _equal(given: bytes, expected: str) -> bool:
    return hmac.compare_digest(given, expected.encode())


class RedactTokens(logging.Filter):
    """Masks credentials in the request lines uvicorn logs (access lines, websocket lines): every part of a query
    string (between `&` or `;`) that names a token in any shape (`token=`, `;token=`, `token%3D`, `token[]=`, percent-
    encoded twice) becomes `token=***`, and the server's own token is masked wherever it appears, in any encoding."""

    QUERY = re.compile(r"\?([^\s\"]*)")
    PART = re.compile(r"[^&;]+")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add_secret(self, token: str) -> None:
        self.secrets |= {token, quote(token), quote_plus(token), quote(token, safe="")} - {""}

    def redact(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = self.QUERY.sub(lambda m: "?" + self.PART.sub(_mask_token, m[1]), value)
        for secret in self.secrets:
            value = value.replace(secret, "***")
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):  # uvicorn's formatters unpack the args, so they keep their shape
            record.args = tuple(self.redact(arg) for arg in record.args)
        return True


def _mask_token(part: re.Match) -> str:
    text = part[0]
    for _ in range(5):  # undo percent-encoding, however many times it was applied
        text, before = unquote_plus(text), text
        if text == before:
            break
    return "token=***" if "token" in text.lower() else part[0]


def redact_token_logs(token: str | None = None) -> None:
    """Install RedactTokens on the loggers that print request paths; logging.config keeps it when uvicorn configures."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        redact = next((f for f in logger.filters if isinstance(f, RedactTokens)), None)
        if redact is None:
            redact = RedactTokens()
            logger.addFilter(redact)
        if token:
            redact.add_secret(token)


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
