"""Recorded calls replayed through the real webhook + WebSocket path.

The server runs under uvicorn on 127.0.0.1; the model side is the loopback Realtime server, so the
SDK's own ``OpenAIRealtimeWebSocketModel`` runs unmodified; Twilio is played by
``telephony.simulate``. Assertions are on the audio content and the call log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import numpy as np
import pytest
from audio_checks import (
    band_energy,
    best_lag_correlation,
    pcm,
    peak_hz,
    tone_snr_db,
    ulaw_tone,
    upsample_fft,
)
from helpers import (
    SILENCE,
    LiveServer,
    events,
    final_log,
    fixture_audio,
    start_message,
    wait_for,
    within,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from telephony.audio import ulaw_decode
from telephony.config import CallLimits
from telephony.observability.call_log import read_call_log
from telephony.simulate import SimulationResult
from telephony.testing import tone


def log_of(srv: LiveServer, result: SimulationResult) -> list[dict[str, Any]]:
    return read_call_log(srv.settings.call_log_dir / f"{result.call_sid}.jsonl")


async def test_caller_tone_reaches_model_as_pcm16_24k_of_same_frequency(live_server) -> None:
    audio = ulaw_tone(1013.0, 1.0) + SILENCE * 8000
    async with live_server(reply=lambda _: tone(600, 200)) as srv:
        result = await srv.call(audio, speed=8, tail_s=0.2)
        await asyncio.wait_for(srv.model.connections[0].closed.wait(), 5)
    conn = srv.model.connections[0]
    # every caller frame arrived, transcoded: 20 ms of μ-law -> 960 bytes of pcm16 24 kHz
    assert len(conn.audio) == result.frames_sent * 960
    received = pcm(bytes(conn.audio))[:24000]
    assert abs(peak_hz(received[1200:], 24000) - 1013) < 2
    assert tone_snr_db(received[1200:22800], 1013.0, 24000) > 35  # G.711 noise only
    image_db = 10 * np.log10(
        band_energy(received, 24000, 4600, 12000) / band_energy(received, 24000, 900, 1100)
    )
    assert image_db < -60  # no images of the 8 kHz signal above the phone band
    assert conn.received("session.update"), "the SDK configured the session"
    headers = {name.lower() for name in conn.headers}
    assert "sec-websocket-extensions" not in headers  # no permessage-deflate on audio
    update = conn.received("session.update")[0]["session"]
    assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert update["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


async def test_speech_fixture_reaches_model_intact(live_server) -> None:
    caller = fixture_audio("goforward.ulaw")
    async with live_server(reply=lambda _: tone(600, 200)) as srv:
        result = await srv.call(caller, speed=8, tail_s=0.2)
        await asyncio.wait_for(srv.model.connections[0].closed.wait(), 5)
    conn = srv.model.connections[0]
    assert len(conn.audio) == result.frames_sent * 960
    received = pcm(bytes(conn.audio))[: len(caller) * 3]
    reference = upsample_fft(pcm(ulaw_decode(caller)), 3)
    corr, lag = best_lag_correlation(reference, received, 96)
    assert corr > 0.99 and lag == 48  # same speech, 2 ms of filter delay
    # the phone band keeps its energy (within 0.1 dB) and its share of the total
    original = pcm(ulaw_decode(caller))
    ratio_db = 10 * np.log10(
        band_energy(received, 24000, 300, 3400) / (9 * band_energy(original, 8000, 300, 3400))
    )
    assert abs(ratio_db) < 0.1
    share = band_energy(received, 24000, 300, 3400) / band_energy(received, 24000, 0, 12000)
    assert share == pytest.approx(
        band_energy(original, 8000, 300, 3400) / band_energy(original, 8000, 0, 4000), abs=0.005
    )
    assert band_energy(received, 24000, 4600, 12000) < 1e-6 * band_energy(received, 24000, 0, 12000)


async def test_model_speech_reaches_caller_as_160_byte_ulaw_frames(live_server) -> None:
    speech_8k = pcm(ulaw_decode(fixture_audio("numbers.ulaw")))
    reply_24k = np.rint(upsample_fft(speech_8k, 3)).clip(-32768, 32767).astype("<i2").tobytes()
    async with live_server(reply=lambda _: reply_24k) as srv:
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=8, tail_s=0.5, min_turns=1)
        records = await final_log(srv, result.call_sid)
    assert not result.bad_frames
    assert len(result.turns) == 1
    assert all(len(frame) == 160 for _, frame in result.frames)
    # every sample of the reply, plus the 2 ms filter tail, padded to a whole frame
    assert len(result.frames) == -(-(len(speech_8k) + 17) // 160)
    # one media message per model delta (100 ms here), each of whole 20 ms frames
    assert all(n % 160 == 0 and 0 < n <= 8000 for n in result.media_messages)
    assert len(result.media_messages) <= -(-len(result.frames) // 5) + 1
    heard = pcm(ulaw_decode(result.reply_audio))
    corr, lag = best_lag_correlation(speech_8k, heard, 40)
    assert corr > 0.99 and lag == 16
    model_audio = sum(r["bytes"] for r in events(records, "model.audio"))
    assert model_audio == len(reply_24k)


async def test_marks_report_played_audio_and_barge_in_clears(live_server) -> None:
    # caller speaks, listens for a while, then talks over the 5 s reply
    caller = fixture_audio("goforward.ulaw") + SILENCE * 9600 + fixture_audio("numbers.ulaw")
    # the model's own barge-in (BARGE_IN_GUARD=false): any speech start over the reply
    # interrupts; the guard's rules are tests/bridge/test_barge_in.py
    async with live_server(
        overrides={"barge_in_guard": False},
        reply=lambda turn: tone(600, 5000 if turn == 0 else 300),
    ) as srv:
        # real time: between mark echoes the tracker counts played audio on the wall clock
        result = await srv.call(caller, speed=1, tail_s=0.5, min_turns=2)
        records = await final_log(srv, result.call_sid)
    conn = srv.model.connections[0]

    # Twilio got a clear while the first reply was playing; the reply was cut short
    assert len(result.clears) == 1 and result.turns[0].cleared
    clear_at = result.clears[0]
    first = result.turns[0]
    played_before_clear_ms = sum(20 for at, _ in result.played if at < clear_at)
    assert 500 < played_before_clear_ms < 4000

    # the model was told where playback stopped: the tracker's position from echoed marks
    assert len(conn.truncations) == 1
    truncation = conn.truncations[0]
    assert truncation["item_id"] == conn.responses[0]["item_id"]
    assert truncation["audio_end_ms"] <= played_before_clear_ms  # never more than was heard
    # and not much less: the last echo, then the audio played since it (on the wall clock)
    behind = played_before_clear_ms - truncation["audio_end_ms"]
    within("tracker.truncation_behind_ms", behind, 250)
    confirmed = sum(
        r["ms"] for r in events(records, "mark.played") if r["item_id"] == truncation["item_id"]
    )
    # echoed marks, plus the audio heard since the last echo (PhonePlaybackTracker)
    assert confirmed <= truncation["audio_end_ms"] <= played_before_clear_ms + 20

    # marks sent after the cleared audio came back as cleared, not played; an echo of audio
    # that played but was not read yet when the clear was decided (in the socket, or on its
    # way) reads as cleared too: Twilio echoes both alike, so the two cannot be told apart
    cleared = {name for name, _, was_cleared in result.echoes if was_cleared}
    logged = {r["name"] for r in events(records, "mark.cleared")}
    played = {r["name"] for r in events(records, "mark.played")}
    unread = {n for n, at, was in result.echoes if not was and at <= clear_at} - played
    assert cleared and cleared <= logged and logged - cleared <= unread, (logged, unread)
    clear_record = events(records, "clear.sent")[-1]
    assert clear_record["playing"] is True and clear_record["dropped_ms"] > 0

    # and the caller's second utterance got its own reply, after the barge-in
    assert len(result.turns) == 2 and result.turns[1].first_frame_at > clear_at
    assert first.first_frame_at < clear_at
    end = events(records, "call.end")[0]
    assert end["interruptions"] == 1 and end["clears"] == 1
    assert end["played_ms"] + end["dropped_ms"] == pytest.approx(end["frames_out"] * 20)


async def test_call_log_holds_the_whole_call(live_server) -> None:
    async with live_server(reply=lambda _: tone(600, 500)) as srv:
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=8, tail_s=0.3, min_turns=1)
        records = await final_log(srv, result.call_sid)
    kinds = [r["event"] for r in records]
    assert all(r["call_sid"] == result.call_sid and isinstance(r["ts"], float) for r in records)
    assert all(isinstance(r["mono"], float) for r in records)
    assert kinds[0] == "webhook" and records[0]["from"] == "+15550001111"
    assert records[0]["to"] == "+15550002222"
    for expected in (
        "stream.start",
        "model.connected",
        "speech.started",
        "speech.stopped",
        "transcript.caller",
        "response.started",
        "model.audio",
        "mark.sent",
        "mark.played",
        "model.audio_done",
        "transcript.agent",
        "response.done",
        "stream.stop",
    ):
        assert expected in kinds, expected
    assert kinds.count("call.end") == 1 and kinds[-1] == "call.end"
    audio = events(records, "model.audio")[0]
    assert audio["bytes"] > 0 and audio["item_id"] and audio["response_id"]
    assert events(records, "stream.start")[0]["custom_parameters"]["From"] == "+15550001111"
    assert events(records, "transcript.agent")[0]["text"] == "loopback reply 0"
    end = records[-1]
    assert end["reason"] == "caller_hangup"
    assert end["frames_in"] == result.frames_sent
    assert end["frames_out"] == len(result.frames)
    assert end["marks_sent"] == len(result.marks) == end["marks_played"]
    assert end["protocol_errors"] == 0 and end["model_errors"] == 0
    # the SDK never rejected a loopback event: the loopback speaks the real protocol
    assert not events(records, "model.error")


@pytest.mark.parametrize(
    "hang_up,reason", [(True, "caller_hangup"), (False, "twilio_disconnected")]
)
async def test_caller_hangup_closes_the_model_session(
    live_server, hang_up: bool, reason: str
) -> None:
    async with live_server() as srv:
        result = await srv.call(
            ulaw_tone(500, 0.3), speed=8, tail_s=0.1, max_tail_s=0.2, hang_up=hang_up
        )
        await asyncio.wait_for(srv.model.connections[0].closed.wait(), 5)
        records = await final_log(srv, result.call_sid)
    assert events(records, "call.end")[0]["reason"] == reason


async def test_many_sequential_calls_leave_nothing_behind(live_server) -> None:
    import os

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    caller = ulaw_tone(700, 0.3) + SILENCE * 8000  # 1 s pause: the reply comes inside it
    async with live_server(reply=lambda _: tone(600, 100)) as srv:
        await srv.call(caller, speed=10, tail_s=0.1, min_turns=1)  # warm-up
        registry = srv.app.state.services.registry
        await wait_for(lambda: srv.model.connections[0].closed.is_set() and not registry.sockets)
        tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
        for _ in range(15):
            result = await srv.call(caller, speed=10, tail_s=0.1, max_tail_s=10, min_turns=1)
            if not result.turns:  # say what happened, from the call's own log
                log = read_call_log(srv.settings.call_log_dir / f"{result.call_sid}.jsonl")
                raise AssertionError(f"call got no reply: {[r['event'] for r in log]}")
        assert len(srv.model.connections) == 16
        # every call's sessions, sockets and tasks are gone once it has ended
        await wait_for(
            lambda: (
                all(c.closed.is_set() for c in srv.model.connections)
                and not registry.sockets
                and len(asyncio.all_tasks()) <= tasks_before
            ),
            10,
            "sessions closed, sockets and tasks gone",
        )
        assert open_fds() <= fds_before + 2
    ends = [events(read_call_log(p), "call.end") for p in srv.settings.call_log_dir.glob("*.jsonl")]
    assert len(ends) == 16 and all(len(e) == 1 for e in ends)


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
