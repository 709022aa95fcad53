"""Twilio's identifiers, checked strictly: two letters and 32 hex digits, ASCII only, the whole
string (``fullmatch``)."""

from __future__ import annotations

import re

__all__ = ["is_account_sid", "is_call_sid", "is_stream_sid"]

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}", re.ASCII)
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}", re.ASCII)
_STREAM_SID = re.compile(r"MZ[0-9a-fA-F]{32}", re.ASCII)


def is_call_sid(value: object) -> bool:
    """A CallSid: ``CA`` + 32 hex digits."""
    return isinstance(value, str) and _CALL_SID.fullmatch(value) is not None


def is_account_sid(value: object) -> bool:
    """An AccountSid: ``AC`` + 32 hex digits."""
    return isinstance(value, str) and _ACCOUNT_SID.fullmatch(value) is not None


def is_stream_sid(value: object) -> bool:
    """A Media Streams StreamSid: ``MZ`` + 32 hex digits."""
    return isinstance(value, str) and _STREAM_SID.fullmatch(value) is not None
