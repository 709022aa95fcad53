"""The model side failing: refused, dropped with 1011 or 1000, or reset at TCP level.

The call reconnects once, replaying the conversation into the new session; a second failure
ends the call with a spoken apology through Twilio's REST API (a loopback stand-in here), or by
closing the stream when there are no REST credentials. The call never hangs."""

from __future__ import annotations

import asyncio

import pytest
from audio_checks import contains_run
from helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    events,
    final_log,
    fixture_audio,
    run_server,
    wait_for,
)

from telephony.audio.clips import apology as apology_clip
from telephony.observability.call_log import read_call_log
from telephony.testing import TwilioApiStandIn, tone

CALLER = fixture_audio("goforward.ulaw") + b"\xff" * 12000 + fixture_audio("numbers.ulaw")
# connect failures at `start` (the connects counted from the stream's): no pre-warm at the
# webhook (a failed pre-warm falls back to these: tests/bridge/test_prewarm.py)
COLD = {"model_prewarm": False}


async def test_refused_once_then_the_reconnect_carries_the_call(live_server) -> None:
    async with live_server(overrides=COLD, reply=lambda _: tone(600, 300)) as srv:
        srv.model.reject_next = 1
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=4, tail_s=0.3, min_turns=1)
        log = await final_log(srv, result.call_sid)
    kinds = [r["event"] for r in log]
    assert kinds.count("model.connect_failed") == 1 and "model.reconnecting" in kinds
    assert result.turns and log[-1]["reason"] == "caller_hangup"


@pytest.mark.parametrize("failure", ["1011", "1000", "tcp_reset"])
async def test_mid_call_drop_reconnects_and_replays_the_conversation(
    live_server, failure: str
) -> None:
    async with live_server(reply=lambda turn: tone(600 + 100 * turn, 300)) as srv:
        # the caller waits for its two answers, then 5 s of call time (a busy machine may
        # split a reply into two turns at a stall, or be slow to reconnect)
        call = asyncio.create_task(srv.call(CALLER, speed=4, tail_s=5, min_turns=2))
        # after the first turn (caller transcript + agent reply), the model socket dies
        await wait_for(lambda: srv.model.connections and srv.model.connections[0].responses)
        await wait_for(lambda: srv.model.connections[0].responses[0].get("status") == "completed")
        # and the bridge has the reply's words (its call log is flushed within a second)
        (call_sid,) = srv.app.state.services.registry.live
        path = srv.settings.call_log_dir / f"{call_sid}.jsonl"
        await wait_for(lambda: events(read_call_log(path), "transcript.agent"), 5)
        if failure == "tcp_reset":
            srv.model.abort_all()
        else:
            await srv.model.drop_all(int(failure))
        result = await asyncio.wait_for(call, 30)
        log = await final_log(srv, result.call_sid)
    assert len(srv.model.connections) == 2
    second = srv.model.connections[1]
    items = [e["item"] for e in second.received("conversation.item.create")]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("user", "caller turn 0"),
        ("assistant", "loopback reply 0"),
    ]
    resume = second.received("response.create")
    assert resume and "dropped" in resume[0]["response"]["instructions"]
    assert events(log, "model.reconnecting") and events(log, "model.replayed")[0]["items"] == 2
    # the call went on: the new session answered and the caller heard it
    assert len(result.turns) >= 2 and not result.closed_by_server
    assert log[-1]["reason"] == "caller_hangup"


@pytest.mark.parametrize("with_rest", [True, False])
async def test_second_failure_ends_the_call_with_an_apology(
    live_server, settings, with_rest: bool
) -> None:
    twilio = TwilioApiStandIn()
    async with run_server(twilio.app) as api_url:
        overrides = {"twilio_account_sid": ACCOUNT_SID, "twilio_api_base_url": api_url, **COLD}
        async with live_server(overrides=overrides if with_rest else COLD) as srv:
            srv.model.reject_next = 2  # the first connect and its one retry
            # the caller stays on the line (up to 20 s of call time) until the server ends it
            result = await srv.call(fixture_audio("goforward.ulaw"), speed=4, tail_s=20)
            log = await final_log(srv, result.call_sid)
    assert result.closed_by_server  # the stream was ended by us, not left open in silence
    assert log[-1]["reason"] == "model_connect_failed"
    apology = events(log, "call.apology")[0]
    if with_rest:
        assert apology["via"] == "twilio_rest"
        (request,) = twilio.requests
        assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{result.call_sid}.json"
        assert "<Say>Sorry, we are having technical difficulties" in request.form["Twiml"]
        assert "<Hangup" in request.form["Twiml"]
        assert request.authorization and request.authorization.startswith("Basic ")
    else:  # no REST to say it: the recorded apology over the stream, heard whole
        assert apology["via"] == "stream (recorded apology)" and not twilio.requests
        clip = apology_clip()
        frames = [clip[i : i + 160] for i in range(0, len(clip), 160)]
        assert contains_run([frame for _, frame in result.played], frames)


async def test_drop_after_the_reconnect_ends_the_call(live_server, settings) -> None:
    twilio = TwilioApiStandIn()
    async with run_server(twilio.app) as api_url:
        overrides = {"twilio_account_sid": ACCOUNT_SID, "twilio_api_base_url": api_url}
        async with live_server(overrides=overrides, reply=lambda _: tone(600, 300)) as srv:
            # the caller stays on the line (20 s of call time) until the server ends the call
            call = asyncio.create_task(srv.call(CALLER * 2, speed=4, tail_s=20))
            await wait_for(
                lambda: srv.model.connections and srv.model.connections[0].audio_ms > 500
            )
            await srv.model.drop_all(1011)
            await wait_for(lambda: len(srv.model.connections) == 2)
            await wait_for(lambda: srv.model.connections[1].audio_ms > 500)
            srv.model.abort_all()
            result = await asyncio.wait_for(call, 30)
            log = await final_log(srv, result.call_sid)
    assert result.closed_by_server
    assert log[-1]["reason"] == "model_error"
    assert events(log, "call.apology")[0]["via"] == "twilio_rest" and len(twilio.requests) == 1
    assert len(srv.model.connections) == 2  # exactly one reconnect


async def test_rest_apology_tolerates_a_call_that_already_ended(live_server) -> None:
    twilio = TwilioApiStandIn()
    async with run_server(twilio.app) as api_url:
        overrides = {"twilio_account_sid": ACCOUNT_SID, "twilio_api_base_url": api_url, **COLD}
        async with live_server(overrides=overrides) as srv:
            srv.model.reject_next = 2
            answer_sid = "CA" + "7" * 32
            twilio.gone.add(answer_sid)
            result = await srv.call(
                fixture_audio("goforward.ulaw"), speed=4, tail_s=1, call_sid=answer_sid
            )
            log = await final_log(srv, result.call_sid)
    assert events(log, "call.apology")[0]["via"] == "twilio_rest (call already ended)"
    assert log[-1]["reason"] == "model_connect_failed"


async def test_a_refused_key_is_said_once_in_openais_words_and_the_caller_hears_sorry(
    live_server, monkeypatch, tmp_path, capsys
) -> None:
    """OpenAI answers a wrong key with HTTP 401 and "Incorrect API key provided": no retry
    (it cannot help), the reason logged once with the key masked, the recorded apology played
    (no REST credentials here), and the simulator says why the agent was silent."""
    from telephony.simulate import main

    async with live_server(api_key="sk-the-right-key-0123456789") as srv:
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("CALL_LOG_DIR", str(srv.settings.call_log_dir))
        source = tmp_path / "caller.ulaw"
        source.write_bytes(fixture_audio("goforward.ulaw"))
        args = [str(source), "--url", srv.base_url, "--tail", "20", "--out", str(tmp_path / "o")]
        assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    (log_path,) = srv.settings.call_log_dir.glob("*.jsonl")
    log = read_call_log(log_path)
    failed = events(log, "model.connect_failed")
    assert (
        len(failed) == 1 and failed[0]["refused"] is True and not events(log, "model.reconnecting")
    )
    assert failed[0]["error"].startswith("ModelRefused: HTTP 401: Incorrect API key provided: sk-…")
    assert "sk-test-not-a-real-key" not in log_path.read_text()  # the key, masked or not
    assert events(log, "call.apology")[0]["via"] == "stream (recorded apology)"
    assert log[-1]["reason"] == "model_connect_failed"
    assert "note: the model failed: ModelRefused: HTTP 401: Incorrect API key" in printed


async def test_an_unreachable_model_host_is_named(live_server) -> None:
    async with live_server(
        overrides={"openai_realtime_url": "ws://no-such-host.invalid/v1"}
    ) as srv:
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=4, tail_s=20)
        log = await final_log(srv, result.call_sid)
    failed = events(log, "model.connect_failed")
    assert failed and failed[0]["error"].startswith(
        "ModelUnreachable: cannot reach no-such-host.invalid"
    )
