"""The dial command: ``python -m telephony.dial +15551234567`` (also ``telephony-dial``).

Creates an outbound call through Twilio's REST API (:func:`telephony.twilio.dial.place_call`)
from ``TWILIO_FROM_NUMBER``, and writes ``call.dialed`` to the call's log. When the callee
answers, Twilio requests ``PUBLIC_URL/incoming-call``, so the running server's bridge and agent
take the call. With ``OUTBOUND_AMD`` (the default) Twilio also tells ``PUBLIC_URL/amd-status``
who answered: a machine hears ``--voicemail`` (or ``VOICEMAIL_MESSAGE``) after its beep. Needs
``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM_NUMBER`` and ``PUBLIC_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import ConfigError, Settings, load_settings
from .observability.call_log import CallLogs
from .twilio.dial import DialError, place_call
from .twilio.rest import TwilioCalls

__all__ = ["dial", "main"]


async def dial(
    settings: Settings,
    twilio: TwilioCalls,
    to: str,
    base_url: str,
    voicemail: str | None = None,
) -> str:
    """Place the call and log ``call.dialed``; returns the CallSid. With ``OUTBOUND_AMD``,
    Twilio detects who answers; a machine gets ``voicemail`` (``VOICEMAIL_MESSAGE`` when None).
    Raises ``DialError`` for a bad number or no caller ID, ``TwilioRestException`` when Twilio
    refuses."""
    amd = settings.outbound_amd
    call_sid = await place_call(
        twilio, to, settings.twilio_from_number, base_url, amd=amd, voicemail=voicemail
    )
    with CallLogs(settings.call_log_dir, settings.instance_id).open(call_sid) as log:
        log.write(
            "call.dialed",
            direction="outbound",
            to=to,
            amd=amd,
            voicemail_message=bool(voicemail),
            **{"from": settings.twilio_from_number},
        )
    return call_sid


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; prints the new CallSid. Exit 2 on bad settings or number."""
    parser = argparse.ArgumentParser(
        prog="python -m telephony.dial",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("to", help="the number to call, +E.164")
    parser.add_argument(
        "--voicemail", help="the message to leave if a machine answers (VOICEMAIL_MESSAGE)"
    )
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
        call_sid = asyncio.run(dial(settings, twilio, args.to, settings.public_url, args.voicemail))
    except DialError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(call_sid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
