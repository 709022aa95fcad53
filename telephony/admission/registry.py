"""Calls in progress: capacity, stream tokens at admission, and draining at shutdown.

Shared by the Media Streams and SIP paths, so ``MAX_CONCURRENT_CALLS`` counts both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from .tokens import StreamTokens, TokenError

__all__ = ["POLICY_VIOLATION", "TRY_AGAIN_LATER", "CallRegistry", "Endable", "Refused"]

logger = logging.getLogger("telephony.admission")

PENDING_TTL_S = 30.0  # an answered call that has not started streaming holds its slot this long
POLICY_VIOLATION = 1008  # WebSocket close code: a bad or missing stream token
TRY_AGAIN_LATER = 1013  # WebSocket close code: at capacity


class Refused(Exception):
    """A stream may not go on: it is closed with ``code`` before any model session."""

    def __init__(self, reason: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Endable(Protocol):
    """A call in progress, as draining sees it."""

    def end(self, reason: str) -> None: ...


class CallRegistry:
    """Calls in progress and answered calls not yet streaming: capacity, tokens, draining.

    Args:
        max_calls: calls beyond this are answered ``<Reject reason="busy"/>`` (webhook) or closed
            with 1013 (stream).
        tokens: issues and redeems per-call stream tokens.
    """

    def __init__(self, max_calls: int, tokens: StreamTokens) -> None:
        self.max_calls = max_calls
        self.tokens = tokens
        self.draining = False
        self.calls: set[str] = set()  # admitted CallSids
        self.pending: dict[str, float] = {}  # answered CallSid -> deadline to start
        self.sockets: dict[asyncio.Task[Any], Endable] = {}  # every call task in progress

    def _live_pending(self) -> int:
        now = time.monotonic()
        self.pending = {sid: t for sid, t in self.pending.items() if t > now}
        return len(self.pending)

    def answer(self, call_sid: str) -> str | None:
        """A stream token for a new call, or None when busy (at capacity or draining)."""
        if self.draining or len(self.calls) + self._live_pending() >= self.max_calls:
            return None
        self.pending[call_sid] = time.monotonic() + PENDING_TTL_S
        return self.tokens.issue(call_sid)

    def admit(self, call_sid: str, token: str | None) -> None:
        """The admission check when a stream's ``start`` arrives with ``token``.

        Raises:
            Refused: a bad token (1008) or no room (1013).
        """
        try:
            self.tokens.redeem(call_sid, token)
        except TokenError as exc:
            raise Refused(str(exc)) from None
        self.pending.pop(call_sid, None)
        if len(self.calls) >= self.max_calls:
            raise Refused("at capacity", TRY_AGAIN_LATER)
        self.calls.add(call_sid)

    def admit_sip(self, call_id: str) -> bool:
        """Take a SIP call if there is room (not draining, under the limit)."""
        if self.draining or len(self.calls) + self._live_pending() >= self.max_calls:
            return False
        self.calls.add(call_id)
        return True

    def release(self, call_sid: str | None) -> None:
        if call_sid is not None:
            self.calls.discard(call_sid)

    async def drain(self, grace_s: float, goodbye_s: float = 10.0) -> None:
        """Take no new calls; let calls run up to ``grace_s`` seconds; then end the rest
        politely (each says goodbye if it can and writes its ``call.end``), cancelling any that
        have not ended ``goodbye_s`` seconds later."""
        self.draining = True
        if self.sockets and grace_s > 0:
            logger.info(
                "draining: %d call(s) in progress, waiting up to %.0fs", len(self.sockets), grace_s
            )
            await asyncio.wait(set(self.sockets), timeout=grace_s)
        if not self.sockets:
            return
        logger.info("ending %d call(s) for shutdown", len(self.sockets))
        for call in self.sockets.values():
            call.end("server_shutdown")
        await asyncio.wait(set(self.sockets), timeout=goodbye_s)
        for task in list(self.sockets):
            task.cancel()
        if self.sockets:
            await asyncio.gather(*self.sockets, return_exceptions=True)
