"""Warnings that strangers can trigger, at a bounded rate.

A forged signature, a refused stream or a junk frame each deserve a log line, but a flood of
them must not flood the log: :class:`LogLimiter` lets ``burst`` lines per key through in each
``window_s`` and counts the rest into the next line it lets through.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["LogLimiter"]


class LogLimiter:
    """Rate-limited warnings on ``logger``, per key (such as the kind of refusal)."""

    def __init__(self, logger: logging.Logger, window_s: float = 10.0, burst: int = 5) -> None:
        self._logger = logger
        self._window_s = window_s
        self._burst = burst
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, sent, dropped)

    def warning(self, key: str, message: str, *args: Any) -> None:
        """Log ``message % args`` at WARNING unless ``key`` used up its burst in this window."""
        now = time.monotonic()
        start, sent, dropped = self._windows.get(key, (now, 0, 0))
        if now - start >= self._window_s:
            start, sent = now, 0
        if sent >= self._burst:
            self._windows[key] = (start, sent, dropped + 1)
            return
        if dropped:
            message += f" (+{dropped} like it not logged)"
        self._windows[key] = (start, sent + 1, 0)
        if len(self._windows) > 1000:  # keys are ours, but stay bounded whatever they are
            self._windows = {key: self._windows[key]}
        self._logger.warning(message, *args)
