"""OpenAI's SIP call ids, checked strictly: ``rtc_`` (Realtime) or ``live_`` (a GPT-Live
session) and up to 64 ASCII letters, digits or underscores, the whole string (the documented
example is ``rtc_`` + 32 hex digits)."""

from __future__ import annotations

import re

__all__ = ["is_live_session_id", "is_sip_call_id"]

_SIP_CALL_ID = re.compile(r"rtc_[A-Za-z0-9_]{1,64}", re.ASCII)
_LIVE_SESSION_ID = re.compile(r"live_[A-Za-z0-9_]{1,64}", re.ASCII)


def is_sip_call_id(value: object) -> bool:
    """A Realtime SIP ``call_id``."""
    return isinstance(value, str) and _SIP_CALL_ID.fullmatch(value) is not None


def is_live_session_id(value: object) -> bool:
    """A GPT-Live session id (``live.transport.incoming``'s ``session_id``)."""
    return isinstance(value, str) and _LIVE_SESSION_ID.fullmatch(value) is not None
