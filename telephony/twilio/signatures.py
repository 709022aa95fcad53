"""Twilio request signatures.

Twilio signs every webhook and the Media Streams WebSocket handshake with ``X-Twilio-Signature``:
base64(HMAC(key, URL + sorted form params)). By default the key is the account's auth token
and the HMAC is SHA-1. Accounts that use webhook *shared keys* (Twilio's Webhooks configuration
API) sign with the SharedKey secret instead, with the algorithm the Setting names (HMAC-SHA256),
and say so in ``X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<name>``. The twilio
package's ``RequestValidator`` computes both; we choose the key from that header and refuse a
request that names a key or an algorithm we do not have.

The URL checked is always ``PUBLIC_URL`` + the request's path and query (the URL Twilio
requested); only the loopback development mode builds it from the ``Host`` header. The
WebSocket signature covers only the URL, so it is the same for every call; the per-call stream
token (:mod:`telephony.admission.tokens`) is the second factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    RequestValidator,
    get_signature_algorithm,
)

__all__ = ["SignatureChecker", "request_url"]

SIGNATURE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
MAX_SIGNATURE_CHARS = 100  # base64 of a SHA-256 HMAC is 44


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
        public_url: configured public base URL (``https://abc.ngrok.app``); None only in the
            loopback development mode, where the ``Host`` header names the server.
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
        secure, host, base = scheme in ("https", "wss"), headers.get("host", ""), ""
    if websocket:
        prefix = "wss" if secure else "ws"
    else:
        prefix = "https" if secure else "http"
    url = f"{prefix}://{host}{base}{path}"
    return f"{url}?{query}" if query else url


class SignatureChecker:
    """Checks ``X-Twilio-Signature`` with the twilio package's ``RequestValidator``.

    Args:
        auth_token: the account's auth token (HMAC-SHA1 signatures, no settings header).
        shared_key: the SharedKey secret, for requests that carry
            ``X-Twilio-Webhooks-Signature-Settings``; None refuses those.
        shared_key_id: the SharedKey's id; when given, a settings header naming another key is
            refused.
    """

    def __init__(
        self, auth_token: str, shared_key: str | None = None, shared_key_id: str | None = None
    ) -> None:
        self._auth_token = RequestValidator(auth_token)
        self._shared_key = RequestValidator(shared_key) if shared_key else None
        self._shared_key_id = shared_key_id

    def valid(
        self,
        url: str,
        params: Mapping[str, str],
        signature: str | None,
        signature_settings: str | None = None,
    ) -> bool:
        """True when ``signature`` signs ``url`` and the form ``params`` (``{}`` for the socket)
        with the key and algorithm that ``signature_settings`` (the
        ``X-Twilio-Webhooks-Signature-Settings`` header, or None) names.

        Never raises; a missing, malformed or non-ASCII signature is invalid.
        """
        if (
            not signature
            or len(signature) > MAX_SIGNATURE_CHARS
            or not SIGNATURE_CHARS.issuperset(signature)
        ):
            return False
        if not signature_settings:
            validator, algorithm = self._auth_token, HMAC_SHA1
        else:
            validator, algorithm = self._shared_key, get_signature_algorithm(signature_settings)
            key = _setting(signature_settings, "key")
            if validator is None or (self._shared_key_id and key != self._shared_key_id):
                return False  # a key we do not have
            if algorithm not in (HMAC_SHA1, HMAC_SHA256):
                return False  # an algorithm we do not know
        try:
            return bool(validator.validate(url, dict(params), signature, algorithm))
        except Exception:
            return False


def _setting(header: str, name: str) -> str | None:
    for part in header.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return None
