"""Request body limits, enforced before any handler reads a byte (ASGI middleware).

Each route has a maximum body size. A declared ``Content-Length`` above it is answered 413 at
once, without reading; a body that grows past it while it is read (chunked, or a lying length)
stops being read and is answered 413 if no response has started. Twilio's routes take only
``application/x-www-form-urlencoded`` (415 otherwise), so multipart parsing never runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_LIMITS", "BodyLimit", "BodyLimits"]

logger = logging.getLogger("telephony.routes.limits")

FORM = b"application/x-www-form-urlencoded"


@dataclass(frozen=True)
class BodyLimit:
    """The body rule of the paths that start with ``prefix``."""

    prefix: str
    max_bytes: int
    form_only: bool = False


DEFAULT_LIMITS = (
    BodyLimit("/incoming-call", 64 * 1024, form_only=True),  # Twilio sends about 1-2 KiB
    BodyLimit("/call-status", 64 * 1024, form_only=True),
    BodyLimit("/amd-status", 64 * 1024, form_only=True),  # Twilio's AMD callback: a form too
    BodyLimit("/openai/webhook", 256 * 1024),  # SIP headers: a few KiB
    BodyLimit("/calls", 4 * 1024),  # {"to": "+1…"}
)
OTHER_MAX_BYTES = 16 * 1024


class _TooLarge(Exception):
    pass


class BodyLimits:
    """ASGI middleware applying :class:`BodyLimit` rules (first matching prefix wins)."""

    def __init__(self, app: ASGIApp, limits: Sequence[BodyLimit] = DEFAULT_LIMITS) -> None:
        self.app = app
        self.limits = tuple(limits)

    def _rule(self, path: str) -> BodyLimit:
        for rule in self.limits:
            if path == rule.prefix or path.startswith(rule.prefix + "/"):
                return rule
        return BodyLimit("", OTHER_MAX_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self._rule(scope["path"])
        headers = dict(scope.get("headers") or [])
        if rule.form_only and scope["method"] == "POST":
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type != FORM:
                await _answer(send, 415, b"form-urlencoded bodies only")
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > rule.max_bytes):
            await _answer(send, 413, b"request body too large")
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > rule.max_bytes:
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            logger.warning("%s: body over %d bytes refused", scope["path"], rule.max_bytes)
            if not started:
                await _answer(send, 413, b"request body too large")


async def _answer(send: Send, status: int, text: bytes) -> None:
    headers: list[Any] = [(b"content-type", b"text/plain"), (b"connection", b"close")]
    headers.append((b"content-length", str(len(text)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
