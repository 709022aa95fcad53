"""Fuzzing the Twilio side: the parser and the whole bridge take any input without crashing."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.call import MediaStreamCall
from telephony.call_log import read_call_log
from telephony.media_stream import ProtocolError, parse_message

EVENTS = ["connected", "start", "media", "mark", "dtmf", "stop", "clear", "bogus", ""]
STREAM_SID = "MZ" + "a" * 32
CALL_SID = "CA" + "b" * 32

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=50),
    json_values,
)
messages = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS)},
    optional={
        "streamSid": st.one_of(st.just(STREAM_SID), st.text(max_size=40), json_values),
        "sequenceNumber": st.one_of(st.integers(-5, 10**12).map(str), json_values),
        "media": st.fixed_dictionaries(
            {"payload": payloads},
            optional={"chunk": json_values, "timestamp": json_values, "track": json_values},
        ),
        "mark": st.one_of(st.fixed_dictionaries({"name": json_values}), json_values),
        "dtmf": st.one_of(st.fixed_dictionaries({"digit": st.text(max_size=3)}), json_values),
        "start": st.one_of(
            st.fixed_dictionaries(
                {"streamSid": st.just(STREAM_SID), "callSid": st.text(max_size=40)},
                optional={"customParameters": json_values, "mediaFormat": json_values},
            ),
            json_values,
        ),
        "stop": json_values,
    },
)
frames = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_parser_never_raises_anything_but_protocol_error(frame: str | bytes) -> None:
    try:
        message = parse_message(frame)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert message.event in EVENTS


class FakeSocket:
    """A Twilio media socket that plays a script of frames and records what we send."""

    def __init__(self, script: list[str | bytes]) -> None:
        self.script = list(script)
        self.sent: list[str] = []
        self.closed_with: int | None = None

    async def receive(self) -> str | bytes | None:
        await asyncio.sleep(0)
        return self.script.pop(0) if self.script else None

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


class FakeSession:
    """Stands in for the RealtimeSession: takes audio, emits nothing until closed."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.closed = asyncio.Event()

    async def enter(self) -> FakeSession:
        return self

    async def send_audio(self, audio: bytes) -> None:
        self.audio += audio

    async def close(self) -> None:
        self.closed.set()

    def __aiter__(self) -> FakeSession:
        return self

    async def __anext__(self) -> Any:
        await self.closed.wait()
        raise StopAsyncIteration


def start_frame() -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": STREAM_SID,
            "start": {"streamSid": STREAM_SID, "callSid": CALL_SID},
        }
    )


def run_call(script: list[str | bytes], log_dir: Path) -> tuple[MediaStreamCall, FakeSession]:
    session = FakeSession()

    async def open_session(tracker: Any, call_sid: str) -> Any:
        return session

    async def main() -> MediaStreamCall:
        socket = FakeSocket([start_frame(), *script])
        call = MediaStreamCall(socket, open_session, log_dir)
        await asyncio.wait_for(call.run(), 10)
        return call

    return asyncio.run(main()), session


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(frames, max_size=25))
def test_bridge_survives_any_frames(tmp_path: Path, script: list[str | bytes]) -> None:
    log_dir = tmp_path / "calls"
    _call, session = run_call(script, log_dir)
    records = read_call_log(log_dir / f"{CALL_SID}.jsonl")
    assert [r["event"] for r in records].count("call.end") == 1
    end = records[-1]
    assert end["event"] == "call.end"
    assert end["reason"] in ("caller_hangup", "twilio_disconnected")
    assert session.closed.is_set()
    (log_dir / f"{CALL_SID}.jsonl").unlink()


def test_sequence_numbers_and_payload_sizes_are_checked(tmp_path: Path) -> None:
    def media(seq: int | None, size: int = 160, sid: str = STREAM_SID) -> str:
        message: dict[str, Any] = {
            "event": "media",
            "streamSid": sid,
            "media": {"payload": base64.b64encode(b"\xff" * size).decode()},
        }
        if seq is not None:
            message["sequenceNumber"] = str(seq)
        return json.dumps(message)

    script: list[str | bytes] = [
        media(2),
        media(3),
        media(3),  # repeated
        media(2),  # going back
        media(10**9),  # absurd jump
        media(4, size=4000),  # oversized payload
        media(5, sid="MZother"),  # unknown stream
        media(None),  # no counter: accepted
        media(6),
        json.dumps({"event": "stop", "sequenceNumber": "7", "streamSid": STREAM_SID}),
    ]
    call, session = run_call(script, tmp_path)
    records = read_call_log(tmp_path / f"{CALL_SID}.jsonl")
    errors = [r["error"] for r in records if r["event"] == "protocol.error"]
    assert len(errors) == 5
    assert any("after 3" in e for e in errors) and any("absurd" in e for e in errors)
    assert any("4000 bytes" in e for e in errors) and any("unknown streamSid" in e for e in errors)
    assert call.frames_in == 4 and len(session.audio) == 4 * 960
    assert records[-1]["reason"] == "caller_hangup"
