"""Sealed control messages: the fleet's control channel takes only what a member of the fleet sent.

Redis pub/sub has no notion of who published, so any client that can reach Redis could ask an
instance to hang up, transfer or speak to a live call. Every message on ``tel:ctl:{instance}``
is therefore sealed:

- an HMAC-SHA256 over the destination channel, a timestamp and the message body, keyed with a
  key derived from ``STREAM_TOKEN_SECRET`` (which every instance of a fleet shares; HMAC per
  RFC 2104, the key derived as ``HMAC(secret, "telephony/fleet-control/v1")``);
- a timestamp window (:data:`WINDOW_S`, either side of this machine's clock): an old message
  replayed later is refused;
- each seal is taken once: the same sealed message published again within the window is
  refused.

Knows nothing of what the messages mean (their schema is the caller's:
:mod:`telephony.remote_control`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WINDOW_S", "ControlSeal", "Refused"]

WINDOW_S = 30.0  # a sealed message is good this long either side of its timestamp
MAX_SEEN = 20_000  # seals remembered for replay checks (a fleet sends far fewer per window)
MAX_BYTES = 64 * 1024  # a control message is a few hundred bytes; a live list a few tens of kB


class Refused(ValueError):
    """A control message that was not sealed by a member of this fleet; ``reason`` is one of
    ``not sealed``, ``bad MAC``, ``old timestamp``, ``replayed``, ``too large``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ControlSeal:
    """Seals and opens the fleet's control messages.

    Args:
        secret: ``STREAM_TOKEN_SECRET``'s bytes (the same on every instance).
        window_s: how far a message's timestamp may be from this machine's clock, seconds.
        clock: wall-clock seconds (``time.time``); instances' clocks must agree within
            ``window_s`` (NTP keeps them within milliseconds).
    """

    def __init__(
        self, secret: bytes, window_s: float = WINDOW_S, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ValueError("the control channel needs a secret (STREAM_TOKEN_SECRET)")
        self._key = hmac.new(secret, b"telephony/fleet-control/v1", hashlib.sha256).digest()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, float] = {}  # MAC -> when it may be forgotten (clock seconds)

    def _mac(self, channel: str, stamp: str, body: str) -> str:
        signed = f"{channel}\n{stamp}\n{body}".encode()
        return hmac.new(self._key, signed, hashlib.sha256).hexdigest()

    def seal(self, channel: str, message: dict[str, Any]) -> str:
        """``message`` (JSON-serialisable) sealed for ``channel``: the string to publish."""
        body = json.dumps(message, separators=(",", ":"))
        stamp = f"{self._clock():.6f}"
        return json.dumps({"t": stamp, "m": body, "mac": self._mac(channel, stamp, body)})

    def open(self, channel: str, data: bytes | str) -> Any:
        """The message sealed in ``data`` for ``channel`` (as JSON decoded; its schema is the
        caller's to check).

        Raises:
            Refused: not sealed for this channel with this fleet's key, outside the timestamp
                window, already taken, or over :data:`MAX_BYTES`.
        """
        if len(data) > MAX_BYTES:
            raise Refused("too large")
        try:
            outer = json.loads(data)
        except ValueError:
            raise Refused("not sealed") from None
        if not isinstance(outer, dict):
            raise Refused("not sealed")
        stamp, body, mac = outer.get("t"), outer.get("m"), outer.get("mac")
        if not (isinstance(stamp, str) and isinstance(body, str) and isinstance(mac, str)):
            raise Refused("not sealed")
        if not hmac.compare_digest(self._mac(channel, stamp, body), mac):
            raise Refused("bad MAC")
        now = self._clock()
        try:
            sent = float(stamp)
        except ValueError:
            raise Refused("old timestamp") from None
        if not abs(now - sent) <= self._window_s:  # also refuses NaN
            raise Refused("old timestamp")
        if mac in self._seen:
            raise Refused("replayed")
        self._remember(mac, now)
        return json.loads(body)  # ours: it was sealed from json.dumps

    def _remember(self, mac: str, now: float) -> None:
        if len(self._seen) >= MAX_SEEN:
            self._seen = {m: t for m, t in self._seen.items() if t > now}
            while len(self._seen) >= MAX_SEEN:  # a burst within one window: drop the oldest
                del self._seen[next(iter(self._seen))]
        self._seen[mac] = now + 2 * self._window_s
