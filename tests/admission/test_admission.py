"""Admission: stream tokens bind a stream to its call, capacity answers busy, slots are freed."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import xml.etree.ElementTree as ET

import pytest
from helpers import (
    AUTH_TOKEN,
    fixture_audio,
    run_server,
    start_message,
)
from websockets.asyncio.client import connect

from telephony.admission import StreamTokens, TokenError
from telephony.app import create_app
from telephony.config import Settings
from telephony.observability.call_log import read_call_log
from telephony.simulate import answer_call
from telephony.testing import LoopbackRealtimeServer, tone

# the stream path alone: no model session before `start` (with MODEL_PREWARM, the webhook opens
# one: tests/bridge/test_prewarm.py)
COLD = {"model_prewarm": False}


@pytest.mark.parametrize("problem", ["missing", "tampered", "other call", "expired", "reused"])
async def test_stream_tokens_bind_the_stream_to_its_call(live_server, problem: str) -> None:
    # the stream path alone (the webhook's pre-warmed session: tests/bridge/test_prewarm.py)
    async with live_server(overrides=COLD, reply=lambda _: tone(600, 100)) as srv:
        answer = await srv.answer()
        parameters = dict(answer.parameters)
        call_sid = answer.call_sid
        if problem == "missing":
            parameters.pop("token")
        elif problem == "tampered":
            parameters["token"] = parameters["token"][:-4] + "AAAA"
        elif problem == "other call":
            call_sid = (await srv.answer()).call_sid  # a real call, but not this token's
        elif problem == "expired":
            tokens = srv.app.state.services.registry.tokens
            parameters["token"] = tokens.issue(call_sid, now=1_000_000.0)
        elif problem == "reused":
            await srv.call(fixture_audio("goforward.ulaw")[:8000], speed=8, tail_s=0.1)
            first = srv.model.connections[0]
            assert first.audio, "a normal call went through first"
            # replay the very same handshake and token as an earlier, finished call
            reuse = await srv.answer()
            async with connect(reuse.stream_url, additional_headers=reuse.headers) as ws:
                await ws.send(start_message(reuse.call_sid, reuse.parameters))
                await ws.send(json.dumps({"event": "stop", "streamSid": "MZ" + "1" * 32}))
                await asyncio.wait_for(ws.wait_closed(), 5)
            call_sid, parameters = reuse.call_sid, reuse.parameters
        connections_before = len(srv.model.connections)
        async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
            await ws.send(start_message(call_sid, parameters))
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1008
        assert len(srv.model.connections) == connections_before  # no session, no cost


def test_stream_token_unit_rules() -> None:
    tokens = StreamTokens(b"k" * 32, ttl_s=60)
    token = tokens.issue("CA1", now=1000.0)
    with pytest.raises(TokenError, match="match"):
        tokens.redeem("CA2", token, now=1001.0)
    with pytest.raises(TokenError, match="expired"):
        tokens.redeem("CA1", token, now=2000.0)
    tokens.redeem("CA1", token, now=1001.0)
    with pytest.raises(TokenError, match="already used"):
        tokens.redeem("CA1", token, now=1002.0)
    with pytest.raises(TokenError, match="malformed"):
        tokens.redeem("CA1", "a.b", now=1001.0)
    # another server secret: the token does not verify
    with pytest.raises(TokenError, match="match"):
        StreamTokens(b"z" * 32).redeem("CA1", tokens.issue("CA1"))


async def test_calls_beyond_capacity_get_busy(settings: Settings) -> None:
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as model:
        app = create_app(
            settings.model_copy(
                update={"openai_realtime_url": model.url, "max_concurrent_calls": 1, **COLD}
            )
        )
        async with run_server(app, settings.port) as base_url:
            first = await answer_call(base_url, auth_token=AUTH_TOKEN)
            with pytest.raises(ValueError, match="no <Connect><Stream"):
                await answer_call(base_url, auth_token=AUTH_TOKEN, call_sid="CA" + "9" * 32)
            busy_log = read_call_log(settings.call_log_dir / f"CA{'9' * 32}.jsonl")
            assert busy_log[-1]["event"] == "call.rejected" and busy_log[-1]["twiml"] == "busy"
            assert not model.connections
            # the first call's slot frees when it ends; then new calls are answered again
            async with connect(first.stream_url, additional_headers=first.headers) as ws:
                await ws.send(start_message(first.call_sid, first.parameters))
                await ws.send(json.dumps({"event": "stop", "streamSid": "MZ" + "1" * 32}))
                await asyncio.wait_for(ws.wait_closed(), 5)
            for _ in range(100):
                if not app.state.services.registry.calls:
                    break
                await asyncio.sleep(0.02)
            again = await answer_call(base_url, auth_token=AUTH_TOKEN)
            assert again.parameters["token"]


def test_busy_twiml_is_a_reject() -> None:
    from telephony.twilio.twiml import reject

    root = ET.fromstring(reject("busy"))
    assert root.find("Reject") is not None and root.find("Reject").attrib["reason"] == "busy"


async def test_a_replayed_webhook_gets_the_same_token_and_no_second_slot(live_server) -> None:
    async with live_server(reply=lambda _: tone(600, 100)) as srv:
        registry = srv.services.registry
        first = await srv.answer()
        replays = [await srv.answer(call_sid=first.call_sid) for _ in range(3)]
        assert {r.parameters["token"] for r in replays} == {first.parameters["token"]}
        assert list(registry.pending) == [first.call_sid]  # one slot for one call
        # the stream starts once; the same token again is refused, and so is any other
        ws = await connect(first.stream_url, additional_headers=first.headers)
        await ws.send(start_message(first.call_sid, first.parameters))
        for _ in range(100):
            if first.call_sid in registry.calls:
                break
            await asyncio.sleep(0.02)
        connections = len(srv.model.connections)
        again = await connect(first.stream_url, additional_headers=first.headers)
        await again.send(start_message(first.call_sid, first.parameters))
        await asyncio.wait_for(again.wait_closed(), 5)
        assert again.close_code == 1008
        minted = {**first.parameters, "token": registry.tokens.issue(first.call_sid)}
        second = await connect(first.stream_url, additional_headers=first.headers)
        await second.send(start_message(first.call_sid, minted))  # a valid token, a live call
        await asyncio.wait_for(second.wait_closed(), 5)
        assert second.close_code == 1008
        assert len(srv.model.connections) == connections  # no second model session
        # a webhook replayed while (or after) the call streams is refused: no new token
        with pytest.raises(ValueError, match='Reject reason="busy"'):
            await srv.answer(call_sid=first.call_sid)
        await ws.close()


async def test_an_account_other_than_ours_is_refused(live_server) -> None:
    overrides = {"twilio_account_sid": "AC" + "7" * 32}
    async with live_server(overrides=overrides, reply=lambda _: tone(600, 100)) as srv:
        with pytest.raises(urllib.error.HTTPError) as refused:
            await srv.answer()  # the simulator calls from AC000…
        assert refused.value.code == 403


async def test_a_crafted_token_is_refused_cleanly(live_server) -> None:
    async with live_server(overrides=COLD, reply=lambda _: tone(600, 100)) as srv:
        answer = await srv.answer()
        for token in ("١٢٣.abc.def", "9" * 400, "1.\u00e9" * 20, "1.a.b.c"):
            ws = await connect(answer.stream_url, additional_headers=answer.headers)
            await ws.send(start_message(answer.call_sid, {**answer.parameters, "token": token}))
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1008  # a refusal, not a crash (1000 or 1011)
        assert not srv.model.connections
