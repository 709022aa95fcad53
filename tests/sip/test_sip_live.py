"""The SIP path on GPT-Live (``REALTIME_BACKEND=live``, issue 33), in a two-instance fleet of
real ``server.py`` processes sharing a real Redis, with the OpenAI REST stand-in and the fake
GPT-Live server's sideband: one pending call raises ``live.transport.incoming`` and
``realtime.call.incoming`` (another id, the same SIP ``Call-ID``), delivered to different
instances, one of them twice: it is accepted exactly once, by GPT-Live. The accepted call
then runs over the sideband: greeting, a delegated ``end_call``, the hang-up once the goodbye
(reflected on the sideband) has stopped, and a ``call.end`` with the cost."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from helpers import run_server
from processes import ROOT, Fleet, RedisServer, ServerProcess

from telephony.observability.call_log import read_call_log
from telephony.testing import OpenAIApiStandIn, signed_webhook, tone
from telephony.testing.live_server import FakeLiveServer, LiveConnection
from telephony.testing.openai_api import signed_live_webhook

SECRET = "whsec_" + base64.b64encode(b"sip-live-webhook-secret-0123456789").decode()
SESSION = "live_" + "a" * 32
HEADERS = {"From": "<sip:+15550001111@pstn.twilio.com>", "To": "<sip:+15550002222@x>",
           "Call-ID": "4f1c0e2d@10.0.0.1"}  # fmt: skip


async def until(done: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``done()`` (state of another process, or of the fake's socket)."""
    async with asyncio.timeout(seconds):
        while not done():  # noqa: ASYNC110 (nothing here to await on)
            await asyncio.sleep(0.05)


def post(base_url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        base_url + "/openai/webhook", data=body, method="POST", headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def settings(fake: FakeLiveServer, openai_url: str, **more: str) -> dict[str, str]:
    """A ``server.py``'s settings for SIP calls on GPT-Live (the agents of ``live_agents``)."""
    return {
        "REALTIME_BACKEND": "live",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": f"{openai_url}/v1",
        "OPENAI_LIVE_URL": fake.base_url.replace("http://", "ws://"),
        "OPENAI_WEBHOOK_SECRET": SECRET,
        "TWILIO_AUTH_TOKEN": "twilio-auth-token-0123456789abcdef",
        "GREETING": "Hello.",
        "AGENT": "live_agents:agent",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'bridge'}",
        **more,
    }


def one_server(
    fake: FakeLiveServer, openai_url: str, tmp_path: Path, **more: str
) -> dict[str, str]:
    """One ``server.py``'s settings, its call logs under ``tmp_path``."""
    return settings(fake, openai_url, CALL_LOG_DIR=str(tmp_path / "calls"), **more)


async def sip_call(server: ServerProcess, fake: FakeLiveServer) -> LiveConnection:
    """Start ``server``, deliver one call's ``live.transport.incoming`` and return the
    sideband it attached, once the greeting was asked for."""
    await server.up()
    webhook = signed_live_webhook(SECRET, SESSION, HEADERS)
    status, body = await asyncio.to_thread(post, server.base_url, *webhook)
    assert (status, body["status"]) == (200, "accepted")
    await until(
        lambda: (
            bool(fake.connections) and "session.commentary.append" in fake.connections[0].types()
        )
    )
    return fake.connections[0]


async def test_one_call_raising_both_webhooks_is_accepted_once_by_gpt_live_and_runs(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    openai = OpenAIApiStandIn()
    fake = FakeLiveServer(
        greeting=tone(600, 400),
        reply=lambda n: tone(700, 600),
        delegate=lambda n: [("end_call", '{"reason": "done"}')],
    )
    async with fake, run_server(openai.app) as openai_url:
        env = settings(fake, openai_url, FLEET_HEARTBEAT="0.5",
                       STREAM_TOKEN_SECRET="fleet-stream-token-secret-0123456789")  # fmt: skip
        fleet = Fleet(tmp_path, redis, env, ["A", "B"])
        try:
            await fleet.start()
            live = signed_live_webhook(SECRET, SESSION, HEADERS, webhook_id="wh_live")
            realtime = signed_webhook(SECRET, "rtc_" + "b" * 32, HEADERS, webhook_id="wh_rtc")
            replies = await asyncio.gather(
                asyncio.to_thread(post, fleet["A"].base_url, *live),
                asyncio.to_thread(post, fleet["B"].base_url, *live),  # a redelivery, elsewhere
                asyncio.to_thread(post, fleet["B"].base_url, *realtime),
            )
            statuses = sorted(body["status"] for _, body in replies)
            assert statuses == ["accepted", "duplicate", "ignored: REALTIME_BACKEND=live"]
            (accepted,) = openai.of("live.accept")
            assert accepted[0] == SESSION and openai.of("accept") == []  # no Realtime accept
            session = accepted[1]["session"]
            assert session["type"] == "live" and "format" not in session["audio"]
            assert {t["name"] for t in session["delegation"]["responses"]["tools"]} >= {"end_call"}
            owner = next(n for n in "AB" if (fleet.log_dir(n) / f"{SESSION}.jsonl").exists())
            await until(
                lambda: (
                    bool(fake.connections)
                    and "session.commentary.append" in fake.connections[0].types()
                )
            )
            (sideband,) = fake.connections
            assert sideband.attached == SESSION and "session.start" not in sideband.types()
            await asyncio.sleep(0.6)  # the greeting has been spoken
            await sideband.caller_turn()  # the caller says goodbye; the delegate ends the call
            async with asyncio.timeout(10):
                while not openai.of("live.hangup"):  # noqa: ASYNC110 (another server)
                    await asyncio.sleep(0.05)
            assert sideband.refused == []
            assert next(o["output"] for o in sideband.outputs).startswith("The call will end")
            path = fleet.log_dir(owner) / f"{SESSION}.jsonl"
            await until(lambda: read_call_log(path)[-1]["event"] == "call.end")
        finally:
            fleet.stop()
            redis.kill()
    log = read_call_log(path)
    (hangup,) = [r for r in log if r["event"] == "call.hangup"]
    assert hangup["waited_for"] == "speech_stopped" and hangup["via"] == "openai_live_api"
    # the hang-up came after the goodbye stopped: the fake's last reply delta before it
    end = log[-1]
    assert end["backend"] == "live" and end["path"] == "sip" and end["reason"] == "agent_hangup"
    assert end["tokens"]["delegate_input"] == 200
    incoming = next(r for r in log if r["event"] == "sip.incoming")
    assert incoming["sip_media_security"] == "srtp"


async def test_a_sip_call_on_gpt_live_that_goes_quiet_gets_a_goodbye_and_is_hung_up(
    tmp_path: Path,
) -> None:
    """``IDLE_TIMEOUT=2``: after the greeting nobody says anything; the agent is asked for a
    goodbye (the idle note), it plays (reflected on the sideband), then ``live.sessions.hangup``."""
    openai = OpenAIApiStandIn()
    fake = FakeLiveServer(greeting=tone(600, 400))
    async with fake, run_server(openai.app) as openai_url:
        server = ServerProcess(one_server(fake, openai_url, tmp_path, IDLE_TIMEOUT="2"), tmp_path)
        try:
            sideband = await sip_call(server, fake)
            await until(lambda: bool(openai.of("live.hangup")), 15)
            path = tmp_path / "calls" / f"{SESSION}.jsonl"
            await until(lambda: read_call_log(path)[-1]["event"] == "call.end")
        finally:
            server.stop()
    said = [e["content"] for e in sideband.received if e["type"] == "session.commentary.append"]
    assert len(said) == 2 and "Nobody has said anything" in said[1]
    log = read_call_log(path)
    (asked,) = [r for r in log if r["event"] == "hangup.requested"]
    assert asked["reason"] == "idle_timeout" and asked["by"] == "watchdog"
    (hangup,) = [r for r in log if r["event"] == "call.hangup"]
    assert hangup["waited_for"] == "speech_stopped" and log[-1]["reason"] == "idle_timeout"


async def test_a_slow_tool_plays_the_hold_sound_as_fixture_audio_and_keys_wait_for_it(
    tmp_path: Path,
) -> None:
    """On SIP the audio never reaches us: while a slow tool runs (``check_payment``, 3 s;
    ``FILLER_DELAY=1``) the hold sound is played over the sideband as fixture audio, a piece
    at a time while the tool runs, none after; a key pressed meanwhile reaches the model as a
    note once the piece has played (GPT-Live rejects notes during a fixture)."""
    openai = OpenAIApiStandIn()
    fake = FakeLiveServer(
        greeting=tone(600, 400),
        reply=lambda n: tone(700, 600),
        delegate=lambda n: [("check_payment", '{"order": "42"}')] if n == 0 else [],
    )
    async with fake, run_server(openai.app) as openai_url:
        server = ServerProcess(one_server(fake, openai_url, tmp_path, FILLER_DELAY="1.0"), tmp_path)
        try:
            sideband = await sip_call(server, fake)
            await asyncio.sleep(0.6)  # the greeting has been spoken
            await sideband.caller_turn()  # the delegate calls check_payment
            await until(lambda: bool(sideband.fixtures), 5)
            await sideband.send(
                {"type": "transport.dtmf.received", "event": "5", "event_id": "evt_dtmf"},
                validate=False,
            )
            await until(lambda: bool(sideband.outputs), 8)  # the tool answered
            await asyncio.sleep(2.5)  # (a piece after the tool would start within this)
            path = tmp_path / "calls" / f"{SESSION}.jsonl"
        finally:
            server.stop()
    assert sideband.refused == []  # no note and no fixture while one played
    kinds = sideband.types()
    plays = [i for i, k in enumerate(kinds) if k == "session.output_audio.fixture.play"]
    answered = kinds.index("response.create")
    # the hold began FILLER_DELAY into the 3 s tool and went on, a piece at a time, while it ran
    assert 1 <= len(plays) <= 3 and max(plays) < answered, plays
    assert all(b - a == 1000 for a, b in sideband.fixtures)  # a second of the loop each
    # pieces never overlapped: each began after the last one's end
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(sideband.fixtures))
    # the key's note went out after a piece had played, not during one
    note = kinds.index("session.thinking.append")
    note_at = next(e for e in sideband.received if e.get("type") == "session.thinking.append")
    assert "5" in note_at["content"] and note > plays[0]
    log = read_call_log(path)
    (started,) = [r for r in log if r["event"] == "hold.started"]
    assert started["tools"] == ["check_payment"] and started["via"] == "fixture"
    # FILLER_DELAY (1 s) after the tool began, on the server's clock; uvloop's timers run on
    # the loop's clock, read at the start of its iteration in whole ms, so the wall time can
    # read a little short (999 ms in a CI run): a hold begun at once would read about 0
    assert started["after_ms"] >= 950
    (stopped,) = [r for r in log if r["event"] == "hold.stopped"]
    assert stopped["why"] == "tools_done" and stopped["pieces"] == len(plays)
