"""Per-call stream tokens: the second factor that binds a media stream to its call.

The Media Streams handshake signature covers only the URL, the same for every call. So the
TwiML carries a short-lived, single-use token, HMAC-SHA256(server secret, CallSid, expiry,
nonce), which must come back in ``start``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

__all__ = ["StreamTokens", "TokenError"]

# expiry (UNIX seconds) . 16-character nonce . 43-character base64url HMAC-SHA256, ASCII only
TOKEN_SHAPE = re.compile(r"[0-9]{1,12}\.[A-Za-z0-9_\-]{16}\.[A-Za-z0-9_\-]{43}", re.ASCII)


class TokenError(ValueError):
    """A stream token that is missing, malformed, forged, expired, for another call, or reused."""


class StreamTokens:
    """Issues and redeems single-use stream tokens bound to a CallSid.

    Token text: ``<expiry unix s>.<nonce>.<base64url HMAC-SHA256>``, about 70 characters.

    Args:
        secret: the server secret (bytes); a random one per process if None (then tokens do not
            survive a restart, and several instances behind a balancer need a shared secret).
        ttl_s: how long a token is valid after the webhook answered (the stream starts within a
            second or two).
    """

    def __init__(self, secret: bytes | None = None, ttl_s: float = 120.0) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._ttl = ttl_s
        self._used: dict[str, float] = {}  # nonce -> expiry

    def _mac(self, call_sid: str, expiry: int, nonce: str) -> str:
        message = f"{call_sid}.{expiry}.{nonce}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, call_sid: str, now: float | None = None) -> str:
        """A new token for ``call_sid``."""
        expiry = int((now or time.time()) + self._ttl)
        nonce = secrets.token_urlsafe(12)
        return f"{expiry}.{nonce}.{self._mac(call_sid, expiry, nonce)}"

    def redeem(self, call_sid: str, token: str | None, now: float | None = None) -> tuple[str, int]:
        """Accept ``token`` for ``call_sid`` once in this process; returns ``(nonce, expiry)``
        (UNIX seconds), for a fleet-wide single-use claim.

        Raises:
            TokenError: missing, malformed, wrong MAC (forged or another call's), expired, or
                already used. The message says which, without echoing the token.
        """
        now = now or time.time()
        self._forget_expired(now)
        if not token:
            raise TokenError("missing stream token")
        if not isinstance(token, str) or not TOKEN_SHAPE.fullmatch(token):
            raise TokenError("malformed stream token")
        first, nonce, mac = token.split(".")
        expiry = int(first)
        expected = self._mac(call_sid, expiry, nonce)
        if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
            raise TokenError("stream token does not match this call")
        if expiry < now:
            raise TokenError("stream token expired")
        if nonce in self._used:
            raise TokenError("stream token already used")
        self._used[nonce] = expiry
        return nonce, expiry

    def _forget_expired(self, now: float) -> None:
        if len(self._used) > 256:
            self._used = {n: e for n, e in self._used.items() if e >= now}
