"""Outbound calls: ``python -m telephony.dial +15551234567``.

The call is created with Twilio's REST API. When the callee answers, Twilio requests our Voice
webhook (``/incoming-call``, ``Direction=outbound-api``), so the same TwiML, stream token,
bridge and agent handle it as an inbound call. Progress (initiated, ringing, answered, completed,
busy, no-answer, failed) arrives at ``/call-status`` and goes to the call's log.

Needs ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM_NUMBER`` and ``PUBLIC_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from .call_log import CallLog
from .config import ConfigError, Settings, load_settings
from .twilio_rest import TwilioCalls

__all__ = ["DialError", "place_call"]

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class DialError(ValueError):
    """The call cannot be placed: a setting is missing or the number is not +E.164."""


async def place_call(settings: Settings, twilio: TwilioCalls, to: str, base_url: str) -> str:
    """Create an outbound call to ``to`` (+E.164); returns its CallSid.

    Args:
        base_url: our public https base URL (Twilio requests ``/incoming-call`` and
            ``/call-status`` below it).

    Raises:
        DialError: a bad number or no ``TWILIO_FROM_NUMBER``.
        twilio.base.exceptions.TwilioRestException: Twilio refused the call.
    """
    if not E164.match(to):
        raise DialError(f"{to!r} is not an E.164 number such as +15551234567")
    if not settings.twilio_from_number:
        raise DialError("TWILIO_FROM_NUMBER is not set (the caller ID for outbound calls)")
    base = base_url.rstrip("/")
    call_sid = await twilio.create_call(
        to=to,
        from_=settings.twilio_from_number,
        url=f"{base}/incoming-call",
        status_callback=f"{base}/call-status",
        status_events=STATUS_EVENTS,
    )
    with CallLog(settings.call_log_dir, call_sid) as log:
        log.write(
            "call.dialed", direction="outbound", to=to, **{"from": settings.twilio_from_number}
        )
    return call_sid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.dial",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("to", help="the number to call, +E.164")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    token = settings.twilio_auth_token
    if not (settings.twilio_account_sid and token and settings.public_url):
        print("need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PUBLIC_URL", file=sys.stderr)
        return 2
    twilio = TwilioCalls(
        settings.twilio_account_sid, token.get_secret_value(), settings.twilio_api_base_url
    )
    try:
        call_sid = asyncio.run(place_call(settings, twilio, args.to, settings.public_url))
    except DialError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(call_sid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
