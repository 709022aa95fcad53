"""Signatures, stream tokens, capacity and time limits, through the real HTTP/WebSocket path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import urllib.error
import xml.etree.ElementTree as ET

import pytest
from conftest import AUTH_TOKEN, fixture_audio, run_server
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telephony.app import create_app
from telephony.call import CallLimits
from telephony.call_log import read_call_log
from telephony.config import Settings
from telephony.security import StreamTokens, TokenError
from telephony.simulate import answer_call
from telephony.testing import LoopbackRealtimeServer, tone

CALL_SID = "CA" + "2" * 32
PARAMS = {"CallSid": CALL_SID, "From": "+15550001111", "To": "+15550002222"}


def start_message(
    call_sid: str, parameters: dict[str, str], stream_sid: str = "MZ" + "1" * 32
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {"streamSid": stream_sid, "callSid": call_sid, "customParameters": parameters},
        }
    )


# --------------------------------------------------------------------------- webhook signatures


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",  # empty
        "bm90IGEgc2lnbmF0dXJl",  # forged
        RequestValidator("some-other-token").compute_signature(
            "http://testserver/incoming-call", PARAMS
        ),  # signed with another account's token
        RequestValidator(AUTH_TOKEN).compute_signature(
            "http://testserver/incoming-call", {**PARAMS, "From": "+15559999999"}
        ),  # replayed from another request: other params
        RequestValidator(AUTH_TOKEN).compute_signature(
            "http://testserver/other-path", PARAMS
        ),  # replayed from another URL
    ],
)
def test_webhook_refuses_bad_signatures(
    settings: Settings, signature: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        response = client.post("/incoming-call", data=PARAMS, headers=headers)
    assert response.status_code == 403
    assert "Connect" not in response.text  # no TwiML, no stream, no cost
    assert not (settings.call_log_dir / f"{CALL_SID}.jsonl").exists()
    assert "refused" in caplog.text and AUTH_TOKEN not in caplog.text


def test_webhook_accepts_a_correct_signature_behind_a_proxy(settings: Settings) -> None:
    """Twilio signed the public URL; the app sees another host and port (testserver:80)."""
    app = create_app(settings.model_copy(update={"public_url": "https://public.example:8443"}))
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "https://public.example:8443/incoming-call", PARAMS
    )
    with TestClient(app) as client:
        response = client.post(
            "/incoming-call", data=PARAMS, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 200 and "<Connect>" in response.text
        # the same without PUBLIC_URL, from the tunnel's X-Forwarded-* headers
        plain = create_app(settings)
    with TestClient(plain) as client:
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            "https://tunnel.example/incoming-call", PARAMS
        )
        response = client.post(
            "/incoming-call",
            data=PARAMS,
            headers={
                "X-Twilio-Signature": signature,
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "tunnel.example",
            },
        )
        assert response.status_code == 200


def test_without_auth_token_everything_is_refused_unless_dev_mode(settings: Settings) -> None:
    no_token = settings.model_copy(update={"twilio_auth_token": None})
    with TestClient(create_app(no_token)) as client:
        assert client.post("/incoming-call", data=PARAMS).status_code == 403
    dev = no_token.model_copy(update={"allow_unsigned": True})
    with TestClient(create_app(dev)) as client:
        response = client.post("/incoming-call", data=PARAMS)
        assert response.status_code == 200 and "<Connect>" in response.text


# --------------------------------------------------------------------------- media stream


async def test_media_handshake_refuses_missing_and_forged_signatures(live_server) -> None:
    async with live_server() as srv:
        answer = await srv.answer()
        for headers in ({}, {"X-Twilio-Signature": "Zm9yZ2Vk"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(answer.stream_url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
        forged_for_other_host = RequestValidator(AUTH_TOKEN).compute_signature(
            "wss://elsewhere.example/media-stream", {}
        )
        with pytest.raises(InvalidStatus):
            async with connect(
                answer.stream_url, additional_headers={"X-Twilio-Signature": forged_for_other_host}
            ):
                pass
        assert not srv.model.connections  # no model session was opened


@pytest.mark.parametrize("problem", ["missing", "tampered", "other call", "expired", "reused"])
async def test_stream_tokens_bind_the_stream_to_its_call(live_server, problem: str) -> None:
    async with live_server(reply=lambda _: tone(600, 100)) as srv:
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
            tokens = srv.app.state.calls.tokens
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


# --------------------------------------------------------------------------- capacity and time


async def test_calls_beyond_capacity_get_busy(settings: Settings) -> None:
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as model:
        app = create_app(
            settings.model_copy(
                update={"openai_realtime_url": model.url, "max_concurrent_calls": 1}
            )
        )
        async with run_server(app) as base_url:
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
                if not app.state.calls.calls:
                    break
                await asyncio.sleep(0.02)
            again = await answer_call(base_url, auth_token=AUTH_TOKEN)
            assert again.parameters["token"]


def test_busy_twiml_is_a_reject() -> None:
    from telephony.twiml import reject

    root = ET.fromstring(reject("busy"))
    assert root.find("Reject") is not None and root.find("Reject").attrib["reason"] == "busy"


@pytest.mark.parametrize(
    "limits,reason",
    [
        (CallLimits(idle_timeout=0.4), "idle_timeout"),
        (CallLimits(max_duration=0.6), "max_duration"),
    ],
)
async def test_idle_and_max_duration_end_the_call(
    live_server, limits: CallLimits, reason: str
) -> None:
    async with live_server(limits=limits) as srv:
        answer = await srv.answer()
        async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
            await ws.send(start_message(answer.call_sid, answer.parameters))
            if reason == "max_duration":  # keep talking: only the duration limit can end it
                frame = {"event": "media", "streamSid": "MZ" + "1" * 32}
                with contextlib.suppress(ConnectionClosed):  # until the server hangs up
                    for i in range(200):
                        media = {**frame, "sequenceNumber": str(i + 2)}
                        media["media"] = {"payload": base64.b64encode(b"\xff" * 160).decode()}
                        await ws.send(json.dumps(media))
                        await asyncio.sleep(0.02)
            await asyncio.wait_for(ws.wait_closed(), 5)
        for _ in range(100):
            log = read_call_log(srv.settings.call_log_dir / f"{answer.call_sid}.jsonl")
            if log and log[-1]["event"] == "call.end":
                break
            await asyncio.sleep(0.02)
        assert log[-1]["event"] == "call.end" and log[-1]["reason"] == reason
        if reason == "max_duration":
            assert log[-1]["frames_in"] > 10 and log[-1]["protocol_errors"] == 0
        assert any(r["event"] == "limit" and r["limit"] == reason for r in log)
        assert srv.model.connections[0].closed.is_set()


async def test_bad_webhook_call_is_http_error_for_the_simulator(live_server) -> None:
    async with live_server() as srv:
        with pytest.raises(urllib.error.HTTPError) as refused:
            await answer_call(srv.base_url, auth_token="wrong-token")
        assert refused.value.code == 403


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
