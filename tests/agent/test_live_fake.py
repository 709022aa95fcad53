"""The fake GPT-Live server (telephony/testing/live_server.py), driven by the official ``openai``
client (``client.live.connect()``, which parses every server event with its own models): a
phone leg's session in μ-law, the greeting, a caller turn, a delegated batch of two function
calls, the model yielding to the caller, the real server's strictness, close, expiry and drop.
The first brick of a GPT-Live backend (issue 33)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect

from telephony.audio import ulaw_encode
from telephony.testing import tone
from telephony.testing.live_server import FakeLiveServer

PHONE = {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
WORDS = ulaw_encode(  # 600 ms of a loud 300 Hz "voice", μ-law 8 kHz
    np.rint(8000 * np.sin(2 * np.pi * 300 * np.arange(4800) / 8000)).astype("<i2").tobytes()
)
QUIET = b"\xff" * 160  # 20 ms of μ-law silence


async def until(connection: Any, kind: str, seconds: float = 5.0) -> list[Any]:
    """Server events up to and including the first of type ``kind``."""
    seen: list[Any] = []
    async with asyncio.timeout(seconds):
        async for event in connection:
            seen.append(event)
            if event.type == kind:
                return seen
    raise AssertionError(f"the socket closed before {kind}: {[e.type for e in seen]}")


async def say(connection: Any, audio: bytes) -> None:
    for i in range(0, len(audio), 160):
        await connection.send({"type": "session.input_audio.append",
                               "audio": base64.b64encode(audio[i : i + 160]).decode()})  # fmt: skip


def audio_of(events: list[Any]) -> bytes:
    return b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "session.output_audio.delta"
    )


def client(fake: FakeLiveServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test-not-a-real-key", base_url=fake.base_url)


async def test_a_phone_leg_greets_hears_a_turn_and_answers_in_mu_law() -> None:
    fake = FakeLiveServer(greeting=tone(600, 300), reply=lambda n: tone(700, 400))
    async with fake, client(fake).live.connect() as live:
        await live.send({"type": "session.start", "session": PHONE})
        (started,) = await until(live, "session.started")
        assert started.session.id.startswith("live_")
        await live.send({"type": "session.commentary.append", "delegation_id": None,
                         "content": "Greet the caller.", "event_id": "greet"})  # fmt: skip
        greeting = await until(live, "session.usage.updated")
        assert greeting[0].type == "session.commentary.appended"
        assert greeting[0].client_event_id == "greet"
        assert len(audio_of(greeting)) == 300 * 8  # μ-law at 8 kHz: a byte a sample
        await say(live, WORDS + QUIET * 30)
        turn = await until(live, "session.usage.updated")
        (transcript,) = [e for e in turn if e.type == "session.input_transcript.delta"]
        assert transcript.delta == "caller turn 0"
        assert len(audio_of(turn)) == 400 * 8
        await live.send({"type": "session.close"})
        (closed,) = [e for e in await until(live, "session.closed")]
        assert closed.reason == "close_requested"
    (connection,) = fake.connections
    assert connection.refused == [] and connection.turns == 1


async def test_a_delegated_batch_needs_every_output_before_one_response_create() -> None:
    calls = [("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]
    fake = FakeLiveServer(reply=lambda n: tone(700, 200), delegate=lambda n: calls)
    async with fake, client(fake).live.connect() as live:
        await live.send({"type": "session.start", "session": PHONE})
        await until(live, "session.started")
        await say(live, WORDS + QUIET * 30)
        seen = await until(live, "session.delegation.created")
        for _ in calls:
            seen += await until(live, "response.event")
        done = [e.event["item"] for e in seen if e.type == "response.event"]
        assert [(d["name"], d["arguments"]) for d in done] == calls
        first = {"type": "function_call_output", "call_id": done[0]["call_id"], "output": "18 C"}
        await live.send({"type": "response.item.create", "item": first})
        await live.send({"type": "response.create", "event_id": "early"})  # one is missing
        (error,) = [e for e in await until(live, "error") if e.type == "error"]
        assert error.error.client_event_id == "early"
        second = {"type": "function_call_output", "call_id": done[1]["call_id"], "output": "9:00"}
        await live.send({"type": "response.item.create", "item": second})
        await live.send({"type": "response.create"})
        answer = await until(live, "session.usage.updated")
        assert len(audio_of(answer)) == 200 * 8
    (connection,) = fake.connections
    assert [o["output"] for o in connection.outputs] == ["18 C", "9:00"]


async def test_the_model_yields_when_the_caller_talks_over_it() -> None:
    fake = FakeLiveServer(greeting=tone(600, 3000), yield_ms=200)
    async with fake, client(fake).live.connect() as live:
        await live.send({"type": "session.start", "session": PHONE})
        await until(live, "session.started")
        await live.send(
            {"type": "session.commentary.append", "delegation_id": None, "content": "Greet."}
        )
        spoken = audio_of(await until(live, "session.output_audio.delta"))
        await say(live, WORDS + QUIET * 30)  # then the caller's turn ends
        spoken += audio_of(await until(live, "session.input_transcript.delta"))
    assert fake.connections[0].yielded == 1
    assert len(spoken) < 2000 * 8  # it stopped, well before its 3 s


@pytest.mark.parametrize(
    ("events", "why"),
    [
        ([{"type": "session.commentary.append", "content": "Hi.", "delegation_id": None}],
         "nothing before session.start"),
        ([{"type": "session.start", "session": {**PHONE, "voice_speed": 1.2}}], "unknown fields"),
        ([{"type": "session.start",
           "session": {"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu"}}}}],
         "Field required"),
        ([{"type": "session.dance"}], "invalid event"),
    ],
    ids=["before-start", "unknown-field", "no-rate", "unknown-type"],
)  # fmt: skip
async def test_the_fake_is_as_strict_as_the_real_server(events: list[dict], why: str) -> None:
    fake = FakeLiveServer()
    async with fake:
        # the raw socket: the official client would refuse to send some of these itself
        url = fake.base_url.replace("http", "ws") + "/live/sessions"
        async with connect(url) as ws:
            for event in events:
                await ws.send(json.dumps({**event, "event_id": "bad"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["type"] == "error" and reply["error"]["client_event_id"] == "bad"
    assert why in fake.connections[0].refused[0][1]


async def test_expiry_closes_with_its_reason_and_a_drop_without_one() -> None:
    fake = FakeLiveServer()
    async with fake, client(fake).live.connect(max_retries=0) as live:
        await live.send({"type": "session.start", "session": PHONE})
        await until(live, "session.started")
        await fake.connections[0].expire()
        (closed,) = [e for e in await until(live, "session.closed") if e.type == "session.closed"]
        assert closed.reason == "expired" and closed.usage.seconds >= 0
    async with fake, client(fake).live.connect(max_retries=0) as live:
        await live.send({"type": "session.start", "session": PHONE})
        await until(live, "session.started")
        await fake.connections[1].drop()
        with pytest.raises(Exception):  # noqa: B017 - the client's own closed-socket error
            await until(live, "session.closed", seconds=3)
    assert fake.connections[1].closed_reason is None
