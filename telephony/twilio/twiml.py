"""TwiML answers for Twilio's Voice webhook, built with the twilio package's ``VoiceResponse``."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

__all__ = [
    "LIVE_STREAM_PATH",
    "MEDIA_STREAM_PATH",
    "conference_twiml",
    "connect_stream",
    "dial_twiml",
    "media_stream_url",
    "reject",
    "say_and_hang_up_twiml",
]

MEDIA_STREAM_PATH = "/media-stream"
LIVE_STREAM_PATH = "/media-stream/live"  # the stream of a call on GPT-Live (``LIVE_NUMBERS``)


def media_stream_url(
    public_url: str | None, host: str, scheme: str, path: str = MEDIA_STREAM_PATH
) -> str:
    """The ``<Stream url>`` for our media socket: ``wss://<public host>/media-stream`` (or
    ``path``: :data:`LIVE_STREAM_PATH` for a call on GPT-Live).

    Args:
        public_url: configured public base URL (``https://abc.ngrok.app``); None only in the
            loopback development mode.
        host: the request's ``Host``, used without public_url.
        scheme: ``https``/``http`` of the request, used without public_url.

    Returns:
        A ``wss://`` URL (``ws://`` only when the request itself came over plain http, as from the
        local simulator), with no query string: Twilio rejects one (errors 31920/31922).
    """
    if public_url:
        parts = urlsplit(public_url)
        scheme, host = parts.scheme, parts.netloc
        base_path = parts.path.rstrip("/")
    else:
        base_path = ""
    ws_scheme = "ws" if scheme == "http" else "wss"
    return f"{ws_scheme}://{host}{base_path}{path}"


def connect_stream(stream_url: str, parameters: Mapping[str, str], pause_s: int = 0) -> str:
    """TwiML ``<Connect><Stream url=…>`` with each parameter as a nested ``<Parameter>``.

    The parameters arrive back in the Media Streams ``start`` message as ``customParameters``.
    ``pause_s``: a ``<Pause>`` after the stream, so that the call stays up that long once the
    stream ends (a warm transfer's person waits there to be moved into the conference).
    Returns the XML document as text.
    """
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    if pause_s:
        response.pause(length=pause_s)
    return str(response)


def reject(reason: str = "busy") -> str:
    """TwiML ``<Reject reason=…/>``: Twilio plays a busy signal (or a rejection); no call is set up.

    ``reason`` is ``busy`` or ``rejected``.
    """
    response = VoiceResponse()
    response.reject(reason=reason)
    return str(response)


def dial_twiml(destination: str) -> str:
    """TwiML ``<Dial>`` to an E.164 number or a ``sip:`` URI (a transfer of the live call)."""
    response = VoiceResponse()
    dial = Dial()
    if destination.startswith("sip:"):
        dial.sip(destination)
    else:
        dial.number(destination)
    response.append(dial)
    return str(response)


def conference_twiml(name: str) -> str:
    """TwiML ``<Dial><Conference>`` into the room ``name`` (a warm transfer's caller and
    person): it starts when either enters, ends when either leaves, no beep."""
    response = VoiceResponse()
    dial = Dial()
    dial.conference(name, start_conference_on_enter=True, end_conference_on_exit=True, beep=False)
    response.append(dial)
    return str(response)


def say_and_hang_up_twiml(text: str) -> str:
    """TwiML ``<Say>text</Say><Hangup/>``."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)
