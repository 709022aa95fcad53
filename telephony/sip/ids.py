"""OpenAI's SIP call ids, checked strictly: ``rtc_`` and up to 64 ASCII letters, digits or
underscores, the whole string (the documented example is ``rtc_`` + 32 hex digits)."""

from __future__ import annotations

import re

__all__ = ["is_sip_call_id"]

_SIP_CALL_ID = re.compile(r"rtc_[A-Za-z0-9_]{1,64}", re.ASCII)


def is_sip_call_id(value: object) -> bool:
    """A Realtime SIP ``call_id``."""
    return isinstance(value, str) and _SIP_CALL_ID.fullmatch(value) is not None
