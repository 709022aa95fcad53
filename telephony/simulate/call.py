"""One simulated Twilio call: the signed Voice webhook, then the media stream."""

from __future__ import annotations

import asyncio
import secrets
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

from .audio_files import speech_segments
from .twilio_side import Echo, Say, SimulationResult, TwilioSide

__all__ = ["Answer", "answer_call", "simulate_call"]


def _post_webhook(
    url: str, params: dict[str, str], auth_token: str | None, signed_url: str | None = None
) -> str:
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth_token:
        signature = RequestValidator(auth_token).compute_signature(signed_url or url, params)
        request.add_header("X-Twilio-Signature", signature)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _parse_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None or "url" not in stream.attrib:
        raise ValueError(f"TwiML has no <Connect><Stream url>: {twiml[:200]}")
    params = {p.attrib["name"]: p.attrib.get("value", "") for p in stream.findall("Parameter")}
    return stream.attrib["url"], params


@dataclass
class Answer:
    """What the webhook answered for a new call, and how to open its media stream."""

    call_sid: str
    account_sid: str
    twiml: str
    stream_url: str
    parameters: dict[str, str]
    headers: dict[str, str]  # for the WebSocket handshake (X-Twilio-Signature when signing)

    def via(self, base_url: str) -> Answer:
        """The same answer with its stream opened at ``base_url`` (``http://host:port``) instead
        of the TwiML's host, as a load balancer would route it; the signature stays."""
        parts = urllib.parse.urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = urllib.parse.urlsplit(self.stream_url).path
        url = f"{scheme}://{parts.netloc}{path}"
        return Answer(
            self.call_sid, self.account_sid, self.twiml, url, self.parameters, self.headers
        )


async def answer_call(
    base_url: str,
    *,
    call_sid: str | None = None,
    from_number: str = "+15550001111",
    to_number: str = "+15550002222",
    auth_token: str | None = None,
    public_url: str | None = None,
    webhook: str = "/incoming-call",
    direction: str = "inbound",
) -> Answer:
    """Post Twilio's Voice webhook for a new inbound call, as Twilio does (signed with
    ``auth_token``), and read the ``<Connect><Stream>`` out of the TwiML.

    ``public_url`` is the URL Twilio would have requested (a load balancer's, the server's
    ``PUBLIC_URL``); the request itself goes to ``base_url``, as a balancer forwards it.
    ``webhook``: the path (and query) of the Voice URL (a dialled call's, such as a warm
    transfer's person leg); ``direction``: Twilio's ``Direction`` (``outbound-api`` for a
    call placed over REST).

    Raises:
        ValueError: the TwiML has no ``<Connect><Stream url>`` (e.g. a ``<Reject>``).
        urllib.error.HTTPError: the webhook answered an HTTP error (403 for a bad signature).
    """
    call_sid = call_sid or "CA" + secrets.token_hex(16)
    account_sid = "AC" + "0" * 32
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "CallStatus": "ringing",
        "Direction": direction,
        "ApiVersion": "2010-04-01",
    }
    url = base_url.rstrip("/") + webhook
    signed_url = (public_url or base_url).rstrip("/") + webhook
    twiml = await asyncio.to_thread(_post_webhook, url, params, auth_token, signed_url)
    stream_url, parameters = _parse_twiml(twiml)
    headers = {}
    if auth_token:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(stream_url, {})
    return Answer(call_sid, account_sid, twiml, stream_url, parameters, headers)


async def simulate_call(
    base_url: str,
    audio: bytes,
    *,
    speed: float = 1.0,
    tail_s: float = 1.5,
    max_tail_s: float = 20.0,
    from_number: str = "+15550001111",
    to_number: str = "+15550002222",
    auth_token: str | None = None,
    call_sid: str | None = None,
    hang_up: bool = True,
    min_turns: int = 0,
    dtmf: Sequence[tuple[float, str]] = (),
    answer: Answer | None = None,
    echo: Echo | None = None,
    script: Sequence[Say] = (),
    ended: asyncio.Event | None = None,
) -> SimulationResult:
    """Play one Twilio call against the server at ``base_url`` (``http://host:port``).

    Args:
        audio: caller audio, μ-law 8 kHz bytes.
        speed: virtual clock rate (1.0 is real time; 4.0 streams and plays 4× faster).
        tail_s: after the file ends, keep the line open until the agent has been silent this long
            (and at least 1 s of wall time: a fast replay's or a busy machine's silence is
            not the agent's end).
        max_tail_s: but never longer than this after the file ends (and at least 5 s of wall
            time, when waiting for ``min_turns`` or a ``script``'s cue).
        auth_token: sign the webhook as Twilio does (X-Twilio-Signature).
        hang_up: send ``stop`` at the end (False: just close the socket, as a dropped line does).
        min_turns: stay on the line (within ``max_tail_s``) until this many agent replies began,
            as a caller waits for an answer.
        dtmf: keys to press, as ``(call time in seconds, digit)``; sent as Twilio ``dtmf``.
        answer: a webhook answer already obtained (:func:`answer_call`, possibly
            :meth:`Answer.via` another instance); no webhook is posted then.
        echo: the caller's line echoes the agent's audio back (with line noise); None: no echo.
        script: utterances said after ``audio``, each timed by what the caller heard of the
            agent (:class:`Say`); the call lasts until all were said (within ``max_tail_s``).
        ended: the call stays on the stream until this is set (then ``stop``, as Twilio ends
            a stream when the call is moved or hung up), within ``max_tail_s``.

    Returns:
        A :class:`SimulationResult`. Raises ``ValueError`` if the TwiML has no stream.
    """
    answer = answer or await answer_call(
        base_url,
        call_sid=call_sid,
        from_number=from_number,
        to_number=to_number,
        auth_token=auth_token,
    )
    call_sid, account_sid, parameters = answer.call_sid, answer.account_sid, answer.parameters
    stream_sid = "MZ" + secrets.token_hex(16)
    result = SimulationResult(call_sid, stream_sid, answer.twiml, answer.stream_url, parameters)
    result.caller_speech = speech_segments(audio)
    async with connect(answer.stream_url, additional_headers=answer.headers, max_size=2**20) as ws:
        twilio = TwilioSide(ws, result, speed, echo)
        twilio.ended = ended
        await twilio.open(account_sid)
        await twilio.run(
            audio, tail_s, max_tail_s, min_turns, dtmf, hang_up, account_sid, script=script
        )
        await ws.close()
        result.close_code = ws.close_code
    return result
