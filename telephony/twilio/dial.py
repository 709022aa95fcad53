"""Outbound calls through Twilio's REST API.

The call is created with ``calls.create``. When the callee answers, Twilio requests our Voice
webhook (``/incoming-call``, ``Direction=outbound-api``), so the same TwiML, stream token,
bridge and agent handle it as an inbound call. Progress (initiated, ringing, answered, completed,
busy, no-answer, failed) arrives at ``/call-status``; with answering machine detection, who
answered (``AnsweredBy``: ``human``, ``machine_end_beep``, ``fax``, ``unknown``, ...) arrives
at ``/amd-status``.

Used by ``POST /calls`` and by the ``telephony-dial`` command (``python -m telephony dial``).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from .rest import TwilioCalls

__all__ = ["AMD_PATH", "E164", "MACHINE", "STATUS_EVENTS", "DialError", "place_call"]

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
AMD_PATH = "/amd-status"
# Twilio's AnsweredBy values for a machine whose greeting has ended (DetectMessageEnd)
MACHINE = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


class DialError(ValueError):
    """The call cannot be placed: a setting is missing or the number is not +E.164."""


async def place_call(
    twilio: TwilioCalls,
    to: str,
    from_number: str | None,
    base_url: str,
    *,
    amd: bool = False,
    voicemail: str | None = None,
) -> str:
    """Create an outbound call to ``to`` (+E.164) from ``from_number``; returns its CallSid.

    Args:
        base_url: our public https base URL (Twilio requests ``/incoming-call``,
            ``/call-status`` and, with ``amd``, ``/amd-status`` below it).
        amd: detect who answered (asynchronous answering machine detection).
        voicemail: the message to leave on a machine, carried in the AMD callback's URL (so
            whichever instance receives the callback has it); None: the configured default.

    Raises:
        DialError: a bad number or no caller ID (``TWILIO_FROM_NUMBER``).
        twilio.base.exceptions.TwilioRestException: Twilio refused the call.
    """
    if not E164.match(to):
        raise DialError(f"{to!r} is not an E.164 number such as +15551234567")
    if not from_number:
        raise DialError("TWILIO_FROM_NUMBER is not set (the caller ID for outbound calls)")
    base = base_url.rstrip("/")
    amd_callback = None
    if amd:
        query = f"?{urlencode({'voicemail': voicemail})}" if voicemail else ""
        amd_callback = f"{base}{AMD_PATH}{query}"
    return await twilio.create_call(
        to=to,
        from_=from_number,
        url=f"{base}/incoming-call",
        status_callback=f"{base}/call-status",
        status_events=STATUS_EVENTS,
        amd_callback=amd_callback,
    )
