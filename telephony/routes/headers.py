"""Security headers on the console's pages (ASGI middleware).

The console is the one part of the service a browser shows, so its responses say what a browser
may do with them: no framing (clickjacking), no referrer (a call's URL names its CallSid), no
MIME sniffing, no caching of pages that show calls, and a Content-Security-Policy that keeps
plugins, foreign base URLs and foreign form targets out. Its pages' own scripts and styles are
inline (the templates), so scripts are not restricted by source here.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONSOLE_HEADERS", "ConsoleHeaders"]

CONSOLE_HEADERS = {
    "content-security-policy": (
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class ConsoleHeaders:
    """Adds :data:`CONSOLE_HEADERS` to every HTTP response under ``/console``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/console" or path.startswith("/console/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in CONSOLE_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
