"""Twilio Media Streams messages: parsing every inbound event, refusing bad frames with the reason,
building outbound messages, and a fuzzer that only ever gets ProtocolError."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import EVENTS, frames, media_messages

from telephony.twilio.media_stream import (
    Dtmf,
    Mark,
    Media,
    MediaMessages,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from telephony.twilio.media_stream import _validated as fully_validated

START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": "MZ123",
    "start": {
        "streamSid": "MZ123",
        "accountSid": "AC123",
        "callSid": "CA123",
        "tracks": ["inbound"],
        "customParameters": {"From": "+15551234567"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def test_parses_every_inbound_event() -> None:
    start = parse_message(json.dumps(START))
    assert isinstance(start, Start)
    assert (start.call_sid, start.stream_sid) == ("CA123", "MZ123")
    assert start.custom_parameters == {"From": "+15551234567"}
    payload = base64.b64encode(bytes(range(160))).decode()
    media = parse_message(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "2",
                "streamSid": "MZ123",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload},
            }
        )
    )
    assert isinstance(media, Media) and media.payload == bytes(range(160))
    assert media.sequence_number == 2 and media.media.timestamp == 20
    mark = parse_message('{"event":"mark","streamSid":"MZ123","mark":{"name":"m1"}}')
    assert isinstance(mark, Mark) and mark.name == "m1"
    dtmf = parse_message(
        '{"event":"dtmf","streamSid":"MZ123","dtmf":{"track":"inbound_track","digit":"5"}}'
    )
    assert isinstance(dtmf, Dtmf) and dtmf.digit == "5"
    stop = parse_message('{"event":"stop","streamSid":"MZ123","stop":{"callSid":"CA123"}}')
    assert isinstance(stop, Stop) and stop.stop.call_sid == "CA123"


@pytest.mark.parametrize(
    "frame,why",
    [
        ("not json", "not JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"event":"hello"}', "unknown event"),
        ('{"no":"event"}', "unknown event"),
        ('{"event":"start","streamSid":"MZ1"}', "start"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":"@@@"}}', "base64"),
        ('{"event":"media","streamSid":"MZ1","media":{"payload":5}}', "base64"),
        ('{"event":"media","media":{"payload":""}}', "streamSid"),
        ('{"event":"mark","streamSid":"MZ1"}', "mark"),
        ('{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"12"}}', "digit"),
        (b"\x00\x01", "binary"),
        ("x" * 70000, "exceeds"),
    ],
)
def test_bad_frames_raise_protocol_error_saying_why(frame: str | bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        parse_message(frame)


def test_outbound_messages_have_twilio_shape() -> None:
    media = json.loads(media_message("MZ1", b"\xff" * 160))
    assert media == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
    }
    assert json.loads(mark_message("MZ1", "m7")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "m7"},
    }
    assert json.loads(clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


@given(st.text(max_size=40), st.binary(max_size=2000))
def test_media_messages_are_media_message_character_for_character(sid: str, ulaw: bytes) -> None:
    """The prebuilt outbound ``media`` (the hot path) is the plain one, for any StreamSid."""
    assert MediaMessages(sid).media(ulaw) == media_message(sid, ulaw)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_parser_never_raises_anything_but_protocol_error(frame: str | bytes) -> None:
    try:
        message = parse_message(frame)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert message.event in EVENTS


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(media_messages)
def test_the_lean_media_path_accepts_only_what_full_validation_accepts(message: dict) -> None:
    """``media`` frames skip pydantic; the lean decode must agree with full validation on every
    frame it accepts (what it refuses goes to full validation, which has the last word)."""
    frame = json.dumps(message)
    try:
        lean = parse_message(frame)
    except ProtocolError:
        with pytest.raises(ProtocolError):
            fully_validated(frame)
        return
    assert lean == fully_validated(frame)
    assert isinstance(lean, Media) or lean.event != "media"
