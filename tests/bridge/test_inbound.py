"""What the bridge does with bad input from the media socket: every frame fuzzed, sequence and
payload checks, junk mid-call, oversized messages and sockets that never start."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from audio_checks import ulaw_tone
from helpers import events, final_log, fixture_audio, start_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import CALL_SID, STREAM_SID, frames
from websockets.asyncio.client import connect

from telephony.bridge import MediaStreamCall
from telephony.config import CallLimits
from telephony.observability.call_log import CallLogs, read_call_log
from telephony.testing import tone


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
        call = MediaStreamCall(socket, open_session, CallLogs(log_dir))
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
    assert call.inbound.frames_in == 4 and len(session.audio) == 4 * 960
    assert records[-1]["reason"] == "caller_hangup"


async def test_bad_input_is_logged_and_harms_no_call(live_server) -> None:
    stream_sid = "MZ" + "cd" * 16
    frame = base64.b64encode(ulaw_tone(800, 0.02)).decode()

    def media(sid: str = stream_sid, payload: str = frame) -> str:
        return json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})

    async with live_server(reply=lambda _: tone(600, 200)) as srv:
        answer = await srv.answer()
        call_sid = answer.call_sid
        start = json.dumps(
            {
                "event": "start",
                "streamSid": stream_sid,
                "start": {
                    "streamSid": stream_sid,
                    "callSid": call_sid,
                    "customParameters": answer.parameters,
                },
            }
        )
        other_call = asyncio.create_task(
            srv.call(fixture_audio("goforward.ulaw"), speed=4, tail_s=0.3, min_turns=1)
        )
        async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
            await ws.send("not json")
            await ws.send(media())  # media before start
            await ws.send(b"\x00\x01binary")
            await ws.send(start)
            bad = [
                "{broken",
                json.dumps({"event": "bogus", "streamSid": stream_sid}),
                json.dumps({"event": "media", "streamSid": stream_sid}),  # missing media
                media(payload="***not base64***"),
                media(sid="MZunknown"),
                start,  # duplicate start
                b"\x00binary after start",
            ]
            for message in bad:
                await ws.send(message)
            for _ in range(50):
                await ws.send(media())
            await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid}))
            await asyncio.wait_for(ws.wait_closed(), 5)
        other = await asyncio.wait_for(other_call, 20)
        records = await final_log(srv, call_sid)
        other_records = await final_log(srv, other.call_sid)
    errors = events(records, "protocol.error")
    assert len(errors) == len(bad)
    assert any("base64" in e["error"] for e in errors)
    assert any("unknown streamSid" in e["error"] for e in errors)
    assert any("duplicate start" in e["error"] for e in errors)
    end = events(records, "call.end")[0]
    assert end["reason"] == "caller_hangup" and end["frames_in"] == 50
    assert end["protocol_errors"] == len(bad) + 3  # plus the three before start
    bad_call = next(c for c in srv.model.connections if len(c.audio) == 50 * 960)
    assert bad_call.closed.is_set()
    # the other call, at the same time, went normally
    assert other.turns and not other.bad_frames
    assert events(other_records, "call.end")[0]["protocol_errors"] == 0


async def test_socket_without_start_is_closed(live_server) -> None:
    cold = {"model_prewarm": False}  # the stream path alone (the pre-warm: test_prewarm.py)
    async with live_server(limits=CallLimits(start_timeout=0.3), overrides=cold) as srv:
        answer = await srv.answer()
        async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
            await asyncio.wait_for(ws.wait_closed(), 3)
        assert ws.close_code == 1008
        assert not srv.model.connections  # no model session, no cost
        assert not srv.app.state.services.registry.sockets


async def test_oversized_websocket_message_closes_the_socket(live_server) -> None:
    async with live_server() as srv:
        answer = await srv.answer()
        async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
            await ws.send(start_message(answer.call_sid, answer.parameters))
            log_path = srv.settings.call_log_dir / f"{answer.call_sid}.jsonl"
            for _ in range(100):  # the call is under way
                if "model.connected" in log_path.read_text():
                    break
                await asyncio.sleep(0.02)
            await ws.send("x" * (70 * 1024))  # over the 64 KiB cap
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1009  # message too big
        for _ in range(100):
            log = read_call_log(srv.settings.call_log_dir / f"{answer.call_sid}.jsonl")
            if log[-1]["event"] == "call.end":
                break
            await asyncio.sleep(0.02)
        assert log[-1]["event"] == "call.end" and log[-1]["reason"] == "twilio_disconnected"


async def test_audio_faster_than_real_time_is_dropped_then_the_call_ends(live_server) -> None:
    async with live_server(overrides={"audio_ahead_limit": 1.0}) as srv:
        t0 = time.monotonic()
        # 300 s of audio as fast as the socket takes it
        result = await srv.call(ulaw_tone(500, 300.0), speed=1000, tail_s=0.1, max_tail_s=1)
        wall = time.monotonic() - t0
        log = await final_log(srv, result.call_sid)
    end = log[-1]
    assert end["reason"] == "audio_abuse" and result.close_code == 1008
    assert end["audio_dropped_ms"] >= 10_000
    heard_ms = sum(c.audio_ms for c in srv.model.connections)
    assert heard_ms <= wall * 1000 + 1000 + 100  # real time since the first frame, plus 1 s
    assert len(events(log, "audio.dropped")) < 20  # logged about once a second, not per frame


async def test_a_burst_of_junk_frames_closes_the_socket(live_server) -> None:
    async with live_server() as srv:
        answer = await srv.answer()
        ws = await connect(answer.stream_url, additional_headers=answer.headers)
        await ws.send(start_message(answer.call_sid, answer.parameters))
        for i in range(60):
            await ws.send(json.dumps({"event": "bogus", "n": i}))
        await asyncio.wait_for(ws.wait_closed(), 5)
        log = await final_log(srv, answer.call_sid)
    assert ws.close_code == 1008
    assert log[-1]["reason"] == "protocol_abuse" and log[-1]["protocol_errors"] == 50
    assert len(events(log, "protocol.error")) == 20  # the rest counted, not written
