"""A per-instance rate limit (a token bucket): how many outbound calls ``POST /calls`` places."""

from __future__ import annotations

import time

__all__ = ["RateLimit"]


class RateLimit:
    """At most ``per_minute`` events a minute, with a burst of as many; per instance.

    Args:
        per_minute: events allowed per minute (``DIAL_RATE_LIMIT``).
    """

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._rate = per_minute / 60.0
        self._at = time.monotonic()

    def take(self) -> bool:
        """Use one event if one is left; False when the limit is reached."""
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
