"""Media Streams calls on GPT-Live (``REALTIME_BACKEND=live``, issue 33), through a real
``server.py`` process, the simulated Twilio (``telephony.simulate``) and the fake GPT-Live
server (``telephony.testing.live_server``), which validates every frame both ways against the
``openai`` package's Live event unions and refuses what the real server refuses. The model side
runs through the official client (``client.live.connect()``), unmodified."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from helpers import (
    AUTH_TOKEN,
    ended_log,
    fixture_audio,
    metric_samples,
    twilio_api,
    wait_for,
)
from processes import ServerProcess

from telephony.audio import ulaw_decode, ulaw_encode
from telephony.audio.hold import default_hold_sound
from telephony.observability.call_log import read_call_log
from telephony.replay.extract import read_recording
from telephony.simulate import Echo, SimulationResult, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone
from telephony.testing.live_server import FakeLiveServer

QUIET = b"\xff" * 160  # 20 ms of μ-law silence
WORDS = ulaw_encode(  # 600 ms of a loud 300 Hz "voice"
    np.rint(8000 * np.sin(2 * np.pi * 300 * np.arange(4800) / 8000)).astype("<i2").tobytes()
)
GREETING_MS, REPLY_MS, GOODBYE_MS = 500, 400, 700
HERE = Path(__file__).parent
HOLD_FRAMES = {default_hold_sound()[i : i + 160] for i in range(0, 9600, 160)} - {QUIET}


def caller(*gaps_s: float) -> bytes:
    """Silence for each gap, then the caller's words; a last second of silence."""
    audio = b"".join(QUIET * round(gap * 50) + WORDS for gap in gaps_s)
    return audio + QUIET * 50


def env(fake: FakeLiveServer, workdir: Path, **more: str) -> dict[str, str]:
    return {
        "REALTIME_BACKEND": "live",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": fake.base_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CALL_LOG_DIR": str(workdir / "calls"),
        "GREETING": "Hello, how can I help?",
        **more,
    }


async def call_through(
    fake: FakeLiveServer,
    workdir: Path,
    audio: bytes,
    settings: dict[str, str] | None = None,
    metrics: list[str] | None = None,
    **call: Any,
) -> tuple[SimulationResult, list[dict[str, Any]]]:
    """One simulated call through a fresh ``server.py`` on GPT-Live (``settings``: more
    variables); the result and log (``metrics``: gets the server's ``/metrics`` after it)."""
    server = ServerProcess(env(fake, workdir, **(settings or {})), workdir)
    try:
        await server.up()
        result = await simulate_call(server.base_url, audio, auth_token=AUTH_TOKEN, **call)
        path = workdir / "calls" / f"{result.call_sid}.jsonl"
        async with asyncio.timeout(10):
            while not any(r["event"] == "call.end" for r in read_call_log(path)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        if metrics is not None:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                metrics.append((await http.get("/metrics")).text)
        return result, read_call_log(path)
    finally:
        server.stop()


def records(log: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in log if r["event"] == event]


async def test_a_call_greets_runs_a_batch_of_two_tools_and_hangs_up_after_the_goodbye(
    tmp_path: Path,
) -> None:
    """Greeting, a caller turn whose delegation calls two tools (answered with one output each
    and a single ``response.create``), a second turn that ends the call: the goodbye plays
    whole, then the call hangs up."""
    batches = {0: [("current_time", '{"timezone": "UTC"}'), ("line_capabilities", "{}")],
               1: [("end_call", '{"reason": "caller is done"}')]}  # fmt: skip
    fake = FakeLiveServer(
        greeting=tone(600, GREETING_MS),
        reply=lambda n: tone(700, REPLY_MS if n == 0 else GOODBYE_MS),
        delegate=lambda n: batches.get(n, []),
    )
    async with fake:
        result, log = await call_through(
            fake, tmp_path, caller(1.5, 2.5) + QUIET * 400, tail_s=0.5, max_tail_s=8
        )
    (conn,) = fake.connections
    assert conn.refused == []  # every frame we sent was valid and in order
    start = conn.received[0]
    assert start["type"] == "session.start"
    session = start["session"]
    assert session["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    tools = {t["name"] for t in session["delegation"]["responses"]["tools"]}
    assert {"current_time", "line_capabilities", "end_call"} <= tools
    assert "Interruption policy" in session["instructions"]
    kinds = conn.types()
    # caller audio only after session.started, μ-law as Twilio sent it (a byte a sample)
    assert kinds.index("session.input_audio.append") > 0
    assert conn.audio_bytes >= len(WORDS) * 2
    assert kinds[1] == "session.commentary.append"  # the greeting, first of all
    # two batches: two outputs then one response.create; then one output, one response.create
    answers = [k for k in kinds if k in ("response.item.create", "response.create")]
    assert answers == ["response.item.create"] * 2 + ["response.create"] + [
        "response.item.create",
        "response.create",
    ]
    outputs = [o["output"] for o in conn.outputs]
    assert "demonstration line" in outputs[1] and "hang" not in outputs[1].lower()
    assert "goodbye" in outputs[2].lower()
    # what the caller heard: greeting, the answer, the goodbye, all of it, in 20 ms frames
    heard_ms = sum(len(frame) for _, frame in result.frames) / 8
    assert heard_ms >= GREETING_MS + REPLY_MS + GOODBYE_MS
    assert all(len(frame) % 160 == 0 for _, frame in result.frames)
    assert result.clears == []  # nothing is ever cleared on GPT-Live
    (hangup,) = records(log, "call.hangup")
    assert hangup["waited_for"] == "marks"
    end = records(log, "call.end")[-1]
    assert end["reason"] == "agent_hangup" and end["backend"] == "live"
    assert end["agent_responses"] == 3 and end["sessions"] == 1
    assert end["session_ids"][0].startswith("live_")
    assert end["tokens"]["delegate_input"] == 2 * 200 and end["tokens"]["delegate_cached_input"]
    assert end["tokens"]["live_seconds"] > 0 and end["cost_usd"]["model"] > 0
    assert [r["calls"] for r in records(log, "tool.batch")] == [2, 1]
    assert records(log, "live.input_transcript.delta")[0]["text"] == "caller turn 0"


async def test_keys_reach_the_model_as_a_silent_note(tmp_path: Path) -> None:
    fake = FakeLiveServer(greeting=tone(600, 200))
    async with fake:
        _, log = await call_through(
            fake, tmp_path, QUIET * 250, dtmf=[(0.5, "4"), (0.7, "2")], tail_s=0.3
        )
    (conn,) = fake.connections
    notes = [e for e in conn.received if e["type"] == "session.thinking.append"]
    assert len(notes) == 1 and "4 2" in notes[0]["content"]
    assert notes[0]["delegation_id"] is None
    assert conn.refused == []
    assert records(log, "call.end")[-1]["reason"] == "caller_hangup"


async def test_a_server_error_and_an_unknown_event_are_logged_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    fake = FakeLiveServer(reply=lambda n: tone(700, REPLY_MS))

    async def misbehave() -> None:
        while not fake.connections or fake.connections[0].audio_bytes < 8000:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        conn = fake.connections[0]
        error = {"type": "server_error", "code": "internal", "message": "hiccup",
                 "client_event_id": "evt_x"}  # fmt: skip
        await conn.send({"type": "error", "error": error})
        await conn.send({"type": "session.brand_new.thing", "x": 1}, validate=False)

    async with fake:
        task = asyncio.create_task(misbehave())
        result, log = await call_through(fake, tmp_path, caller(2.5), tail_s=0.5, min_turns=1)
        await task
    (error,) = records(log, "live.error")
    assert error["code"] == "internal" and error["client_event_id"] == "evt_x"
    assert records(log, "live.unknown") == [{**records(log, "live.unknown")[0],
                                             "type": "session.brand_new.thing"}]  # fmt: skip
    # the caller's turn after them was still answered
    assert sum(len(f) for _, f in result.frames) / 8 >= REPLY_MS
    end = records(log, "call.end")[-1]
    assert end["reason"] == "caller_hangup" and end["model_errors"] == 1


async def test_an_expired_session_and_a_dropped_socket_are_renewed_with_the_transcript(
    tmp_path: Path,
) -> None:
    """The session expires after the first turn, the next one drops after the second: each
    is replaced by a session seeded with the call's words so far, and greets nobody."""
    fake = FakeLiveServer(greeting=tone(600, 300), reply=lambda n: tone(700, REPLY_MS))

    async def end_sessions() -> None:
        for n, ending in ((0, "expire"), (1, "drop")):
            while len(fake.connections) <= n or fake.connections[n].turns < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.6)  # the reply has played
            await getattr(fake.connections[n], ending)()

    async with fake:
        task = asyncio.create_task(end_sessions())
        _, log = await call_through(
            fake, tmp_path, caller(1.0, 2.5, 2.5), tail_s=0.5, min_turns=3, max_tail_s=8
        )
        await task
    first, second, third = fake.connections[:3]
    assert first.closed_reason == "expired"
    for conn in (second, third):
        start = conn.received[0]["session"]
        assert "session.commentary.append" not in conn.types()  # no second greeting
        said = [(m["role"], m["content"][0]["text"]) for m in start["input"]]
        assert ("user", "caller turn 0") in said
        assert ("assistant", "reply 0") in said
        assert conn.refused == []
    assert ("user", "caller turn 0") in [
        (m["role"], m["content"][0]["text"]) for m in third.received[0]["session"]["input"]
    ]
    renewals = [r["why"] for r in records(log, "model.renewing")]
    assert renewals == ["expired", "dropped"]
    end = records(log, "call.end")[-1]
    assert end["sessions"] == 3 and end["renewals"] == 2
    assert json.dumps(end).count("live_") >= 3


async def test_a_slow_tool_gets_the_hold_sound_and_a_failing_one_is_reported(
    tmp_path: Path,
) -> None:
    """A batch of a 3 s tool and one that raises: the caller hears the hold sound after
    ``FILLER_DELAY`` until the reply starts; the failing tool is answered (the SDK's failure
    message) in the same batch, never left unanswered."""
    calls = [("check_payment", '{"order": "A17"}'), ("broken_lookup", '{"order": "A17"}')]
    fake = FakeLiveServer(
        reply=lambda n: tone(700, 800), delegate=lambda n: calls if n == 0 else []
    )
    settings = {"AGENT": "live_agents:agent", "FILLER_DELAY": "1.0", "GREETING": "",
                "PYTHONPATH": f"{HERE.parent.parent}{os.pathsep}{HERE}"}  # fmt: skip
    async with fake:
        result, log = await call_through(
            fake, tmp_path, caller(0.5) + QUIET * 300, settings, tail_s=0.5, min_turns=1
        )
    (conn,) = fake.connections
    assert conn.refused == []
    outputs = {o["call_id"]: o["output"] for o in conn.outputs}
    assert sorted(outputs.values())[1] == "order A17 is paid"
    assert "error occurred" in sorted(outputs.values())[0]  # the SDK's failure message
    assert conn.types().count("response.create") == 1
    (hold,) = records(log, "hold.started")
    # FILLER_DELAY, to the event loop's timer resolution: uvloop's timers run on libuv's
    # millisecond clock, read once a loop turn, so a 1 s sleep can end 1-2 ms early by
    # time.monotonic() (CI saw 0.999978 s; a coarse clock, HZ=1000, can add a millisecond)
    assert hold["mono"] - records(log, "tool.call")[0]["mono"] >= 1.0 - 0.005
    assert records(log, "hold.stopped")[0]["why"] == "reply"
    holds = [at for at, frame in result.played if frame in HOLD_FRAMES]
    reply = [at for at, frame in result.played if frame not in HOLD_FRAMES and frame != QUIET]
    assert len(holds) >= 14 and max(holds) < min(reply)  # heard, and never over the reply
    assert [r["name"] for r in records(log, "tool.output")] == ["broken_lookup", "check_payment"]


def pcm24_of(ulaw: bytes) -> bytes:
    """μ-law 8 kHz as pcm16 24 kHz (each sample three times: the fake sends every third)."""
    return np.repeat(np.frombuffer(ulaw_decode(ulaw), "<i2"), 3).tobytes()


async def test_the_agents_own_echo_does_not_make_gpt_live_yield_but_the_caller_does(
    tmp_path: Path,
) -> None:
    """The agent's 3.9 s reply comes back on the line at -10 dB, 150 ms late. GPT-Live (the
    fake: it stops for good after 200 ms of caller energy over its speech) hears it only
    without the echo gate; with it, the reply plays whole and no turn is made of it, while a
    caller who says "Wait, stop" over the same echo still stops it."""
    reply = fixture_audio("agent_reply.ulaw")
    echo = Echo(-10, 150, seed=3)
    runs = {}
    for name, gate, words in (("off", "false", b""), ("on", "true", b""),
                              ("caller", "true", fixture_audio("wait_stop.ulaw"))):  # fmt: skip
        fake = FakeLiveServer(greeting=pcm24_of(reply), reply=lambda n: tone(700, 300))
        (tmp_path / name).mkdir()
        async with fake:
            audio = QUIET * 75 + words + QUIET * (250 - len(words) // 160)
            result, log = await call_through(
                fake, tmp_path / name, audio, {"LIVE_ECHO_GATE": gate}, echo=echo, tail_s=1.0
            )
        runs[name] = (fake.connections[0], result, records(log, "call.end")[-1])
    off, on, caller = runs["off"], runs["on"], runs["caller"]
    # without the gate, its own voice stops it (the greeting; under load the 300 ms reply to
    # that echo can overlap its own echo by the fake's 200 ms too and yield a second time)
    assert off[0].yielded >= 1
    assert on[0].yielded == 0 and on[0].turns == 0  # with it: nothing heard but silence
    assert on[2]["echo_gate"]["frames_gated"] > 50
    heard = sum(len(f) for at, f in on[1].played if f != QUIET) / 8
    assert heard >= len(reply) / 8 - 100  # the reply whole (its trimmed ends are quiet)
    assert caller[0].yielded == 1  # the caller's words still stop it


async def test_a_session_closed_for_content_ends_the_call_without_a_new_one(
    tmp_path: Path,
) -> None:
    fake = FakeLiveServer(reply=lambda n: tone(700, REPLY_MS))

    async def close_for_content() -> None:
        while not fake.connections or fake.connections[0].turns < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await fake._close(fake.connections[0], "content")

    async with fake:
        task = asyncio.create_task(close_for_content())
        _, log = await call_through(fake, tmp_path, caller(1.0) + QUIET * 150, tail_s=0.5)
        await task
    assert len(fake.connections) == 1  # not reopened: OpenAI closed it on purpose
    assert records(log, "live.closed")[0]["reason"] == "content"
    end = records(log, "call.end")[-1]
    assert end["reason"] == "model_closed" and end["sessions"] == 1
    assert records(log, "call.apology")  # the caller is told (REST, or that it could not)


async def test_a_cold_transfer_dials_the_target_once_the_announcement_has_played(
    tmp_path: Path,
) -> None:
    """The delegate calls ``transfer_call("sales")``: the agent's announcement plays whole,
    then Twilio's REST API gets the ``<Dial>`` of the allowed number (never the model's)."""
    batches = {0: [("transfer_call", '{"destination": "sales", "summary": "a refund"}')]}
    fake = FakeLiveServer(reply=lambda n: tone(700, 800), delegate=lambda n: batches.get(n, []))
    async with fake, twilio_api() as (twilio, rest):
        ended = asyncio.Event()
        settings = {"TRANSFER_TARGETS": "sales=+15551230000", "GREETING": "",
                    "TWILIO_ACCOUNT_SID": rest["twilio_account_sid"],
                    "TWILIO_API_BASE_URL": rest["twilio_api_base_url"]}  # fmt: skip

        async def hang_up_when_dialled() -> None:
            while not any(r.form.get("Twiml") for r in twilio.requests):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            ended.set()

        watcher = asyncio.create_task(hang_up_when_dialled())
        result, log = await call_through(
            fake, tmp_path, caller(0.5), settings, ended=ended, max_tail_s=8, tail_s=0.5
        )
        await watcher
    (update,) = twilio.updates(result.call_sid)
    assert "<Dial" in update["Twiml"] and "+15551230000" in update["Twiml"]
    (transfer,) = records(log, "call.transfer")
    assert transfer["destination"] == "sales"
    # the announcement was heard whole before the <Dial>: every speech mark had echoed
    speech = {r["name"] for r in records(log, "mark.sent") if r["speech"]}
    played = {r["name"] for r in records(log, "mark.played") if r["mono"] <= transfer["mono"]}
    assert speech and speech <= played
    assert sum(len(f) for _, f in result.played if f != QUIET) / 8 >= 800 - 40
    assert records(log, "call.end")[-1]["reason"] == "transferred"


async def test_a_recorded_call_has_the_caller_left_and_the_agent_as_heard_right(
    tmp_path: Path,
) -> None:
    """``RECORD_CALLS=true`` on GPT-Live: the WAV beside the log has the caller's words
    (before the echo gate) on the left and the agent's greeting and reply, placed where the
    marks said they played, on the right; ``call.end`` names it."""
    fake = FakeLiveServer(greeting=tone(600, GREETING_MS), reply=lambda n: tone(700, REPLY_MS))
    exposition: list[str] = []
    async with fake:
        result, log = await call_through(
            fake, tmp_path, caller(2.0), {"RECORD_CALLS": "true"}, exposition, tail_s=0.5,
            max_tail_s=8,
        )  # fmt: skip
    end = records(log, "call.end")[-1]
    wav = tmp_path / "calls" / end["recording"]["file"]
    assert wav.name == f"{result.call_sid}.wav"
    left, right = read_recording(wav)
    assert abs(len(left) / 8000 - end["recording"]["seconds"]) < 0.05

    def loud(channel: np.ndarray) -> list[int]:  # 20 ms frames holding sound
        frames = channel[: len(channel) // 160 * 160].reshape(-1, 160).astype(np.float64)
        return [int(i) for i in np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 500)]

    caller_frames, agent_frames = loud(left), loud(right)
    # the caller's 600 ms of words, where they said them (2 s of silence first)
    assert len(caller_frames) >= len(WORDS) // 160 - 2 and caller_frames[0] >= 100
    # the agent: the greeting before the caller spoke, then the reply after they did
    assert len([f for f in agent_frames if f < 100]) >= GREETING_MS // 20 - 2
    reply = [f for f in agent_frames if f > caller_frames[-1]]
    assert len(reply) >= REPLY_MS // 20 - 2
    # the agent's frames are counted in the service's per-frame histogram, both ways
    samples = metric_samples(exposition[0])
    counted = samples[("telephony_frame_processing_seconds_count", (("direction", "out"),))]
    assert counted == (GREETING_MS + REPLY_MS) // 20
    assert samples[("telephony_frame_processing_seconds_count", (("direction", "in"),))] > 0


async def test_a_session_near_its_expiry_is_renewed_at_a_quiet_moment_without_a_gap(
    tmp_path: Path,
) -> None:
    """``expires_at`` 14 s away, ``MODEL_RENEWAL_MARGIN=6``: at a quiet moment in the last
    6 s the next session opens seeded with the transcript and takes the call (one that
    connected as the caller spoke again is dropped, and the next quiet moment tried); the old
    one is closed by us, never ``expired``; every utterance is heard by exactly one session,
    no frame lost, no second greeting."""
    fake = FakeLiveServer(
        greeting=tone(600, GREETING_MS), reply=lambda n: tone(700, REPLY_MS), session_s=14
    )
    async with fake:
        _, log = await call_through(
            fake, tmp_path, caller(1.0, 3.4, 3.0), {"MODEL_RENEWAL_MARGIN": "6"}, tail_s=0.5
        )
    first, *skipped, last = fake.connections
    assert len(skipped) == len(records(log, "model.renewal_skipped"))
    assert all(c.turns == 0 and c.closed_reason is None for c in skipped)  # dropped unused
    assert first.closed_reason == "close_requested" and last.closed_reason == "close_requested"
    (renewed,) = records(log, "model.renewed")
    assert renewed["why"] == "planned" and renewed["old_session_id"] == first.resource["id"]
    assert first.turns + last.turns == 3  # each utterance heard once, by one session
    # the new session was seeded with what had been said, and did not greet again
    seeded = json.dumps(last.session.get("input", []))
    heard = [r["text"] for r in records(log, "live.input_transcript.delta")]
    assert "greeting" in seeded and all(text in seeded for text in heard[: first.turns])
    assert "session.commentary.append" not in last.types()
    end = records(log, "call.end")[-1]
    assert end["sessions"] == 2 and end["renewals"] == 1 and end["caller_frames_dropped"] == 0
    # the switch came at a quiet moment: every mark sent before it had played
    before = [r for r in log if r["mono"] < renewed["mono"]]
    sent = {r["name"] for r in records(before, "mark.sent")}
    assert sent and sent <= {r["name"] for r in records(before, "mark.played")}


async def test_calls_to_a_number_in_live_numbers_run_on_gpt_live_and_others_on_realtime(
    tmp_path: Path,
) -> None:
    """``REALTIME_BACKEND=openai`` with ``LIVE_NUMBERS=+15550002222``: a call to that number
    streams to ``/media-stream/live`` and runs on GPT-Live (not pre-warmed); a call to another
    number streams to ``/media-stream`` and runs on the Realtime API."""
    fake = FakeLiveServer(greeting=tone(600, GREETING_MS), reply=lambda n: tone(700, REPLY_MS))
    async with fake, LoopbackRealtimeServer(reply=lambda n: tone(500, REPLY_MS)) as realtime:
        settings = {"REALTIME_BACKEND": "openai", "OPENAI_REALTIME_URL": realtime.url,
                    "LIVE_NUMBERS": "+15550002222, +15550004444"}  # fmt: skip
        server = ServerProcess(env(fake, tmp_path, **settings), tmp_path)
        try:
            await server.up()
            logs = []
            for to in ("+15550002222", "+15550003333"):
                result = await simulate_call(
                    server.base_url, caller(1.0), auth_token=AUTH_TOKEN, to_number=to, tail_s=0.5
                )
                logs.append(await ended_log(tmp_path / "calls", result.call_sid, 10))
        finally:
            server.stop()
    on_live, on_realtime = logs
    (webhook,) = records(on_live, "webhook")
    assert webhook["stream_url"].endswith("/media-stream/live") and webhook["backend"] == "live"
    assert records(on_live, "call.end")[-1]["backend"] == "live" and not records(on_live, "prewarm")
    (webhook,) = records(on_realtime, "webhook")
    assert webhook["stream_url"].endswith("/media-stream") and "backend" not in webhook
    assert records(on_realtime, "model.connected")[0]["backend"] == "openai"
    assert len(fake.connections) == 1 and len(realtime.connections) == 1


async def test_an_operators_hang_up_gets_the_goodbye_spoken_then_the_call_ends(
    tmp_path: Path,
) -> None:
    """``POST /calls/{CallSid}/hangup`` during a GPT-Live call: the model is asked for a
    goodbye (a commentary instruction saying the operator ends the call), it plays whole, then
    Twilio's REST API hangs the call up; ``call.end`` says ``operator_hangup``."""
    token = "dial-secret-0123456789abcdef"
    fake = FakeLiveServer(greeting=tone(600, GOODBYE_MS))
    async with fake, twilio_api() as (twilio, rest):
        settings = {"GREETING": "", "DIAL_API_TOKEN": token,
                    "TWILIO_ACCOUNT_SID": rest["twilio_account_sid"],
                    "TWILIO_API_BASE_URL": rest["twilio_api_base_url"]}  # fmt: skip
        server = ServerProcess(env(fake, tmp_path, **settings), tmp_path)
        try:
            await server.up()
            call_sid = "CA" + "5" * 32
            ended = twilio.leaves(call_sid)
            call = asyncio.create_task(
                simulate_call(
                    server.base_url,
                    QUIET * 500,
                    auth_token=AUTH_TOKEN,
                    call_sid=call_sid,
                    ended=ended,
                )
            )
            await wait_for(lambda: fake.connections and fake.connections[0].session, 10, "live")
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=server.base_url, headers=auth) as http:
                asked = await http.post(f"/calls/{call_sid}/hangup")
            result = await call
            log = await ended_log(tmp_path / "calls", call_sid, 10)
        finally:
            server.stop()
    assert asked.status_code == 200
    (conn,) = fake.connections
    (goodbye,) = [e for e in conn.received if e["type"] == "session.commentary.append"]
    assert "operator" in goodbye["content"]
    assert twilio.updates(call_sid) == [{"Status": "completed"}]
    (hangup,) = records(log, "call.hangup")
    assert hangup["waited_for"] == "marks" and hangup["via"] == "twilio_rest"
    assert sum(len(f) for _, f in result.played if f != QUIET) / 8 >= GOODBYE_MS - 40
    assert records(log, "call.end")[-1]["reason"] == "operator_hangup"


async def test_a_handoff_gives_the_session_the_new_agents_delegate(tmp_path: Path) -> None:
    """The front desk hands the caller to billing (``transfer_to_billing``, the SDK's handoff
    tool): a ``session.update`` gives the delegate billing's instructions and tools, the
    handoff is answered with the SDK's transfer message, and the next turn can call
    billing's ``refund``, which the front desk did not have."""
    batches = {0: [("transfer_to_billing", "{}")], 1: [("refund", '{"order": "42"}')]}
    fake = FakeLiveServer(
        reply=lambda n: tone(700, REPLY_MS), delegate=lambda n: batches.get(n, [])
    )
    async with fake:
        settings = {"AGENT": "live_agents:front_desk", "GREETING": "",
                    "PYTHONPATH": f"{HERE.parent.parent}{os.pathsep}{HERE}"}  # fmt: skip
        _, log = await call_through(fake, tmp_path, caller(0.5, 1.5), settings, tail_s=0.5)
    (conn,) = fake.connections
    assert conn.refused == []
    start = conn.received[0]["session"]["delegation"]["responses"]
    assert {t["name"] for t in start["tools"]} >= {"transfer_to_billing", "end_call"}
    assert "refund" not in {t["name"] for t in start["tools"]}
    (update,) = [e for e in conn.received if e["type"] == "session.update"]
    responses = update["session"]["delegation"]["responses"]
    assert responses["instructions"] == "You handle refunds."
    assert [t["name"] for t in responses["tools"]] == ["refund"]
    assert "Billing" in conn.outputs[0]["output"]
    assert conn.outputs[1]["output"] == "refund for order 42 started"
    (handoff,) = records(log, "handoff")
    assert handoff["to_agent"] == "Billing" and handoff["tools"] == ["refund"]
