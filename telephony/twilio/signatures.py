"""Twilio request signatures.

Twilio signs every webhook and the Media Streams WebSocket handshake with
``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + sorted form params)); we check it
with the twilio package's ``RequestValidator`` against the URL Twilio requested: the configured
``PUBLIC_URL`` or, without it, the ``X-Forwarded-Proto``/``X-Forwarded-Host`` a tunnel sets.

The WebSocket signature covers only the URL, so it is the same for every call; the per-call
stream token (:mod:`telephony.admission.tokens`) is the second factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

__all__ = ["SignatureChecker", "request_url"]


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
