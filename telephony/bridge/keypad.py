"""Keypad digits (Twilio ``dtmf`` messages) to the agent, as one text message per entry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..observability.call_log import describe_error

__all__ = ["DTMF_TEXT", "MAX_DTMF_DIGITS", "Keypad"]

DTMF_TEXT = "The caller pressed these keys on the phone keypad: {}"
MAX_DTMF_DIGITS = 32  # keys in one message to the agent


class Keypad:
    """Collects a call's keys until ``#``, ``timeout_s`` of quiet or ``MAX_DTMF_DIGITS`` keys,
    then sends them to the agent as one user message (:data:`DTMF_TEXT`).

    Args:
        timeout_s: quiet after the last key before the digits go (``DTMF_TIMEOUT``).
        session: the session in use now (None: the digits are dropped).
        record: writes a call-log record (``dtmf``, ``dtmf.sent``, ``model.error``).
    """

    def __init__(
        self,
        timeout_s: float,
        session: Callable[[], RealtimeSession | None],
        record: Callable[..., Any],
    ) -> None:
        self._timeout_s = timeout_s
        self._session = session
        self._record = record
        self._digits: list[str] = []
        self._waiting: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()  # messages on their way

    def press(self, digit: str) -> None:
        """One key (Twilio ``dtmf``'s ``digit``)."""
        self._record("dtmf", digit=digit)
        self._digits.append(digit)
        if self._waiting is not None:
            self._waiting.cancel()
        if digit == "#" or len(self._digits) >= MAX_DTMF_DIGITS:  # a bounded message
            digits, self._digits = self._digits, []
            self._waiting = None
            sending = asyncio.create_task(self._send(digits))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
        else:
            self._waiting = asyncio.create_task(self._send_after_quiet())

    async def stop(self) -> None:
        """Drop digits not sent yet (the call is over)."""
        for task in (self._waiting, *self._sending):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _send_after_quiet(self) -> None:
        await asyncio.sleep(self._timeout_s)
        digits, self._digits = self._digits, []
        await self._send(digits)

    async def _send(self, digits: list[str]) -> None:
        session = self._session()
        if not digits or session is None:
            return
        text = DTMF_TEXT.format(" ".join(digits))
        try:
            await session.send_message(text)
            self._record("dtmf.sent", digits="".join(digits), text=text)
        except Exception as exc:
            self._record("model.error", where="dtmf", error=describe_error(exc))
