"""Field checks the settings groups share: secrets left empty are unset, tokens and HMAC
secrets long enough, loopback hosts."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import SecretStr

__all__ = ["MIN_SECRET_CHARS", "MIN_TOKEN_CHARS", "empty_is_unset", "is_loopback", "long_enough"]

MIN_TOKEN_CHARS = 24  # bearer tokens: DIAL_API_TOKEN, METRICS_TOKEN, CONSOLE_TOKEN
MIN_SECRET_CHARS = 32  # HMAC secrets: STREAM_TOKEN_SECRET, TWILIO_WEBHOOK_SHARED_KEY


def empty_is_unset(cls: Any, value: object) -> object:
    """A secret set to the empty string (``KEY=`` in ``.env``) is unset."""
    return None if value == "" else value


def long_enough(value: SecretStr | None, chars: int) -> SecretStr | None:
    """``value`` unchanged. Raises ValueError when it is shorter than ``chars``."""
    if value is not None and len(value.get_secret_value()) < chars:
        raise ValueError(f"must be at least {chars} characters")
    return value


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
