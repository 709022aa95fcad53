"""A Media Streams call's time limits, and an end asked for from outside the call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..config import CallLimits

__all__ = ["CallWatchdog"]


class CallWatchdog:
    """Says when a call must end: ``MAX_CALL_DURATION`` after ``start``, ``IDLE_TIMEOUT``
    after the last caller audio, or when :meth:`request` asked (shutdown, an operator, a
    tool's hang-up).

    Args:
        limits: ``max_duration`` and ``idle_timeout`` (seconds).
        record: writes a call-log record (``limit`` when a limit ends the call).
    """

    def __init__(self, limits: CallLimits, record: Callable[..., Any]) -> None:
        self._limits = limits
        self._record = record
        self._requested = asyncio.Event()
        self._reason = "ended_by_server"
        self.started_at = self.last_media_at = time.monotonic()  # the stream's start; audio

    def start(self) -> None:
        """The stream started: the limits count from now."""
        self.started_at = self.last_media_at = time.monotonic()

    def request(self, reason: str) -> None:
        """End the call with ``reason`` (e.g. ``server_shutdown``)."""
        self._reason = reason
        self._requested.set()

    async def run(self) -> str:
        """Wait until the call must end; returns why (``max_duration``, ``idle_timeout`` or
        the reason asked for)."""
        limits = self._limits
        while True:
            if self._requested.is_set():
                return self._reason
            now = time.monotonic()
            if now - self.started_at >= limits.max_duration:
                self._record("limit", limit="max_duration", seconds=limits.max_duration)
                return "max_duration"
            if now - self.last_media_at >= limits.idle_timeout:
                self._record("limit", limit="idle_timeout", seconds=limits.idle_timeout)
                return "idle_timeout"
            wake = min(
                self.started_at + limits.max_duration, self.last_media_at + limits.idle_timeout
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake - now, 0.01)):
                    await self._requested.wait()
