"""Who may reach us: Twilio request signatures and per-call stream tokens.

- Twilio signs every webhook and the Media Streams WebSocket handshake with
  ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + sorted form params)); we check it
  with the twilio package's ``RequestValidator`` against the URL Twilio requested: the configured
  ``PUBLIC_URL`` or, without it, the ``X-Forwarded-Proto``/``X-Forwarded-Host`` a tunnel sets.
- The WebSocket signature covers only the URL, so it is the same for every call. A second factor
  binds each stream to its call: the TwiML carries a short-lived, single-use token,
  HMAC-SHA256(server secret, CallSid, expiry, nonce), which must come back in ``start``.

Knows nothing of OpenAI or of the call bridge.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

__all__ = ["SignatureChecker", "StreamTokens", "TokenError", "request_url"]


def request_url(
    public_url: str | None,
    path: str,
    query: str,
    headers: Mapping[str, str],
    scheme: str,
    websocket: bool = False,
) -> str:
    """The URL Twilio requested, as it signed it.

    Args:
        public_url: configured public base URL (``https://abc.ngrok.app``), or None.
        path: the request path as received (``/incoming-call``).
        query: the raw query string ('' if none).
        headers: request headers (lower-case keys, as Starlette gives them).
        scheme: the scheme the server saw (``http``/``https``/``ws``/``wss``).
        websocket: build a ``ws(s)://`` URL (the Media Streams handshake).
    """
    if public_url:
        parts = urlsplit(public_url)
        secure, host, base = parts.scheme == "https", parts.netloc, parts.path.rstrip("/")
    else:
        proto = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        secure = proto in ("https", "wss")
        host = headers.get("x-forwarded-host") or headers.get("host", "")
        base = ""
    if websocket:
        prefix = "wss" if secure else "ws"
    else:
        prefix = "https" if secure else "http"
    url = f"{prefix}://{host}{base}{path}"
    return f"{url}?{query}" if query else url


class SignatureChecker:
    """Checks ``X-Twilio-Signature`` with the twilio package's ``RequestValidator``."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        """True when ``signature`` signs ``url`` and the form ``params`` (``{}`` for the socket).

        Never raises; a missing or empty signature is invalid.
        """
        if not signature:
            return False
        try:
            return bool(self._validator.validate(url, dict(params), signature))
        except Exception:
            return False


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

    def redeem(self, call_sid: str, token: str | None, now: float | None = None) -> None:
        """Accept ``token`` for ``call_sid`` once.

        Raises:
            TokenError: missing, malformed, wrong MAC (forged or another call's), expired, or
                already used. The message says which, without echoing the token.
        """
        now = now or time.time()
        self._forget_expired(now)
        if not token:
            raise TokenError("missing stream token")
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(token) > 200:
            raise TokenError("malformed stream token")
        expiry, nonce, mac = int(parts[0]), parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(call_sid, expiry, nonce)):
            raise TokenError("stream token does not match this call")
        if expiry < now:
            raise TokenError("stream token expired")
        if nonce in self._used:
            raise TokenError("stream token already used")
        self._used[nonce] = expiry

    def _forget_expired(self, now: float) -> None:
        if len(self._used) > 256:
            self._used = {n: e for n, e in self._used.items() if e >= now}
