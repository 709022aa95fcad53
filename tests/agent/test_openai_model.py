"""The SDK's OpenAI WebSocket model as calls use it, against the loopback Realtime server: raw
messages keep their exact wire form, and sending many of them does not hold up the event loop
(openai-agents 0.24 builds a pydantic ``TypeAdapter`` per raw message: 6 ms each here)."""

from __future__ import annotations

import asyncio
import json
import time

from agents.realtime import RealtimePlaybackTracker, openai_realtime
from agents.realtime.model_inputs import RealtimeModelSendAudio, RealtimeModelSendRawMessage
from agents.realtime.openai_realtime import _ConversionHelper
from helpers import parse_client_frames, wait_for, with_settings, within
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Opcode

from telephony.agent import openai_model
from telephony.agent.default import build_default_agent
from telephony.agent.openai_model import append_message
from telephony.agent.sessions import SessionFactory
from telephony.agent.tools import CallContext
from telephony.testing import LoopbackRealtimeServer, tone

ITEMS = 400


def item(n: int) -> dict:
    role = "user" if n % 2 else "assistant"
    kind = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": f"turn {n}"}]}


async def test_replayed_items_reach_the_model_verbatim_without_stalling_the_loop(settings) -> None:
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as server:
        factory = SessionFactory(
            with_settings(settings, openai_realtime_url=server.url), build_default_agent()
        )
        session = await factory.open(
            RealtimePlaybackTracker(), CallContext(call_sid="CA" + "0" * 32)
        )
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with session:
            connection = server.connections[0]
            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            adapters_before = openai_model._adapter_for.cache_info()
            for n in range(ITEMS):
                message = {"type": "conversation.item.create", "other_data": {"item": item(n)}}
                await session.model.send_event(RealtimeModelSendRawMessage(message=message))
            await wait_for(lambda: len(connection.received("conversation.item.create")) == ITEMS)
            ticking.cancel()
            adapters = openai_model._adapter_for.cache_info()
    created = connection.received("conversation.item.create")
    # the exact wire form: type and item, nothing added, in order
    assert [json.loads(json.dumps(e)) for e in created] == [
        {"type": "conversation.item.create", "item": item(n)} for n in range(ITEMS)
    ]
    # the SDK's adapters come from our cache: each message reused one, and only the first use
    # of a type built it (each build cost 6 ms of CPU: 400 held the loop 2.4 s)
    assert openai_realtime.TypeAdapter is openai_model.cached_type_adapter
    assert adapters.hits - adapters_before.hits >= ITEMS
    assert adapters.misses - adapters_before.misses <= 3
    # so the loop kept turning; a wall-clock figure, its bound far under the 2.4 s
    within("openai_model.replay_loop_stall_s", max(gaps), 0.5)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2]))
def test_the_lean_append_is_the_sdks_wire_message(audio: bytes) -> None:
    """Caller audio bypasses the SDK's event objects; what goes on the wire must stay what the
    SDK would send (an SDK upgrade that changes it fails here)."""
    sdk = _ConversionHelper.convert_audio_to_input_audio_buffer_append(
        RealtimeModelSendAudio(audio=audio, commit=False)
    ).model_dump_json(exclude_unset=True)
    assert append_message(audio) == sdk


async def test_caller_audio_takes_the_lean_path_and_arrives_whole(settings) -> None:
    frames = [bytes([n]) * 960 for n in range(50)]
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as server:
        factory = SessionFactory(
            with_settings(settings, openai_realtime_url=server.url), build_default_agent()
        )
        context = CallContext(call_sid="CA" + "0" * 32)
        session = await factory.open(RealtimePlaybackTracker(), context)
        wire = bytearray()  # every byte written to the socket's transport after the spy
        through_send: list[str] = []  # those that took websockets' own send
        async with session:
            socket = session.model._websocket
            write, original = socket.transport.write, socket.send

            def write_spy(data):
                wire.extend(data)
                return write(data)

            async def send_spy(message, *args, **kwargs):
                through_send.append(message)
                return await original(message, *args, **kwargs)

            socket.transport.write, socket.send = write_spy, send_spy
            through_sdk: list[str] = []
            sdk_send = session.model._send_raw_message

            async def sdk_spy(event):  # the SDK's pydantic path
                through_sdk.append(event.type)
                return await sdk_send(event)

            session.model._send_raw_message = sdk_spy
            for frame in frames:
                await session.send_audio(frame)
            await session.send_audio(b"\x00\x00" * 480, commit=True)  # the SDK's own path
            connection = server.connections[0]
            await wait_for(lambda: connection.audio_bytes == 51 * 960)
    # the wire as the server reads it (websockets' parser): the SDK's messages, in order
    frames_sent = parse_client_frames(bytes(wire))  # and the close frame, at the end
    sent = [frame.data.decode() for frame in frames_sent if frame.opcode is Opcode.TEXT]
    assert sent[:50] == [append_message(frame) for frame in frames]
    # written at once (LivenessConnection.send_now), not through websockets' send: only the
    # audio sent with commit took the SDK's path, and its send
    appends = [m for m in through_send if "input_audio_buffer.append" in m]
    assert appends == [append_message(b"\x00\x00" * 480)]
    audio_through_sdk = [kind for kind in through_sdk if kind.startswith("input_audio_buffer")]
    assert audio_through_sdk == ["input_audio_buffer.append", "input_audio_buffer.commit"]
    assert bytes(connection.audio) == b"".join(frames) + b"\x00\x00" * 480
    assert connection.received("input_audio_buffer.commit")


async def test_caller_audio_waits_while_the_socket_is_paused_by_flow_control(settings) -> None:
    """A frame the transport cannot take now (its write buffer over the high-water mark: a slow
    or stalled model connection) is not written past flow control: it takes websockets' send,
    which waits until the transport drains, and arrives then, in order."""
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as server:
        factory = SessionFactory(
            with_settings(settings, openai_realtime_url=server.url), build_default_agent()
        )
        session = await factory.open(
            RealtimePlaybackTracker(), CallContext(call_sid="CA" + "0" * 32)
        )
        async with session:
            socket = session.model._websocket
            await session.send_audio(b"\x01" * 960)  # written at once
            socket.pause_writing()  # what the transport calls over its high-water mark
            assert socket.send_now(append_message(b"\x02" * 960)) is False
            waiting = asyncio.create_task(session.send_audio(b"\x02" * 960))
            for _ in range(5):  # however long it is given, it waits for the drain
                await asyncio.sleep(0)
            assert not waiting.done()
            socket.resume_writing()
            await waiting
            connection = server.connections[0]
            await wait_for(lambda: connection.audio_bytes == 2 * 960)
    assert bytes(connection.audio) == b"\x01" * 960 + b"\x02" * 960


def test_the_sdks_adapters_are_built_before_the_first_call() -> None:
    """The server builds the SDK's pydantic adapters at startup (build_sdk_adapters, from the
    app's lifespan): a worker's first session event and first raw message then build none,
    each of which blocked the event loop 28-40 ms (every call's audio on the worker waiting).
    In a fresh interpreter, since this one has built them already."""
    import subprocess
    import sys

    script = """
from agents.realtime import openai_realtime as o
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from telephony.agent import openai_model
assert o.ServerEventTypeAdapter is None
openai_model.build_sdk_adapters()
built = openai_model._adapter_for.cache_info().misses
server = o.ServerEventTypeAdapter
raw = RealtimeModelSendRawMessage(message={"type": "response.create"})
assert o._ConversionHelper.try_convert_raw_message(raw) is not None
assert o.get_server_event_type_adapter() is server is not None
assert openai_model._adapter_for.cache_info().misses == built, "an adapter built at first use"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_app_builds_them_at_startup(tmp_path) -> None:
    """What the test above checks is what the server gets: its lifespan builds them."""
    import subprocess
    import sys

    script = f"""
import asyncio
from pathlib import Path
from agents.realtime import openai_realtime as o
from telephony.app import create_app
from telephony.config import Settings
app = create_app(Settings(
    openai_api_key="sk-test-not-a-real-key", twilio_auth_token="0" * 32,
    public_url="http://127.0.0.1:9", port=9, call_log_dir=Path({str(tmp_path)!r}) / "calls",
))
assert o.ServerEventTypeAdapter is None, "built before the app started"
async def main():
    async with app.router.lifespan_context(app):
        assert o.ServerEventTypeAdapter is not None
asyncio.run(main())
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
