"""First words at once: the call's model session opens at the webhook, asks for the greeting
while the phone rings, and the stream adopts it at ``start``; a session no stream takes is
closed after ``MODEL_PREWARM_TIMEOUT`` or at once on a final call status, and a replayed
webhook opens nothing more. (The fleet case, a stream on another instance, is in
tests/fleet/test_fleet.py.)"""

from __future__ import annotations

import httpx
import numpy as np
from helpers import ACCOUNT_SID, AUTH_TOKEN, SILENCE, events, final_log, wait_for, within
from twilio.request_validator import RequestValidator

from telephony.audio.g711 import ulaw_decode
from telephony.observability.call_log import read_call_log
from telephony.testing import tone

GREETING_FRAMES = 30  # the loopback's greeting: 600 ms
# its first 100 ms are loud, the rest quiet: the caller's first frames tell which part came first
GREETING = tone(600, 100, 24000.0) + tone(600, 500, 3000.0)


def loudness(frame: bytes) -> float:
    pcm = np.frombuffer(ulaw_decode(frame), "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(np.square(pcm))))


def prewarm_log(srv, call_sid: str) -> list[dict]:
    path = srv.settings.call_log_dir / f"{call_sid}.jsonl"
    return events(read_call_log(path), "prewarm") if path.exists() else []


def instructed(connection) -> list[dict]:
    return [e for e in connection.received("response.create") if "response" in e]


async def test_a_stream_adopting_a_prewarmed_session_hears_the_greeting_from_its_first_word(
    live_server,
) -> None:
    async with live_server(
        overrides={"greeting": "Hello there."},
        reply=lambda n: GREETING if n == 0 else tone(600, 300),
    ) as srv:
        answer = await srv.answer()
        # the session is open and the greeting asked for before any stream exists
        await wait_for(lambda: srv.model.connections, what="the pre-warm's connect")
        connection = srv.model.connections[0]
        await wait_for(lambda: instructed(connection), what="the greeting asked while ringing")
        result = await srv.call(SILENCE * 8000, answer=answer, tail_s=0.5)
        log = await final_log(srv, result.call_sid)
    assert len(srv.model.connections) == 1  # adopted: no second connect
    assert len(instructed(connection)) == 1  # the greeting asked for once
    greeting = result.turns[0]
    # the whole greeting, nothing dropped (the resampler's filter tail may add a frame)
    assert GREETING_FRAMES <= greeting.frames <= GREETING_FRAMES + 1
    frames = [f for _, f in result.frames]
    # from its first word: the loud start came first, then the quiet rest
    assert all(loudness(f) > 8000 for f in frames[1:4]), [loudness(f) for f in frames[:6]]
    assert all(loudness(f) < 4000 for f in frames[7 : GREETING_FRAMES - 1])
    prewarm = events(log, "prewarm")
    assert [r["outcome"] for r in prewarm] == ["opened", "adopted"], prewarm
    assert prewarm[1]["greeted"] is True and prewarm[1]["waited_ms"] > 0
    connected = events(log, "model.connected")
    assert len(connected) == 1 and connected[0]["prewarmed"] is True
    assert events(log, "greeting.requested")[0]["prewarmed"] is True
    # the greeting was ready: it went out with the stream's first turn of the loop, well
    # before a cold connect could have answered (a wall-clock figure, noted)
    within("prewarm.first_frame_s", greeting.first_frame_at, 0.5, "greeting ready at start")


async def test_an_unanswered_webhooks_session_is_closed_after_the_bound(live_server) -> None:
    async with live_server(overrides={"model_prewarm_timeout": 0.5}) as srv:
        answer = await srv.answer()
        await wait_for(lambda: srv.model.connections, what="the pre-warm's connect")
        connection = srv.model.connections[0]
        await wait_for(connection.closed.is_set, what="the unadopted session closed")
        assert len(srv.services.prewarm) == 0
        records = prewarm_log(srv, answer.call_sid)
    assert [r["outcome"] for r in records] == ["opened", "discarded"], records
    assert records[1]["reason"] == "timeout"
    assert records[1]["waited_s"] >= 0.5  # not before the bound


async def test_a_final_call_status_closes_the_prewarmed_session_at_once(live_server) -> None:
    # the bound is far away: only the status can close it within the wait below
    async with live_server(overrides={"model_prewarm_timeout": 60.0}) as srv:
        answer = await srv.answer()
        await wait_for(lambda: srv.model.connections, what="the pre-warm's connect")
        connection = srv.model.connections[0]
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            for status in ("ringing", "no-answer"):  # only a final one closes it
                params = {
                    "CallSid": answer.call_sid,
                    "AccountSid": ACCOUNT_SID,
                    "CallStatus": status,
                    "Direction": "inbound",
                }
                url = f"{srv.base_url}/call-status"
                signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
                response = await http.post(
                    "/call-status", data=params, headers={"X-Twilio-Signature": signature}
                )
                assert response.status_code == 204
                if status == "ringing":
                    assert answer.call_sid in srv.services.prewarm
        await wait_for(connection.closed.is_set, seconds=5, what="closed on no-answer")
        records = prewarm_log(srv, answer.call_sid)
    assert [r["outcome"] for r in records] == ["opened", "discarded"], records
    assert records[1]["reason"] == "call status no-answer"
    assert records[1]["waited_s"] < 60


async def test_replayed_webhooks_open_no_extra_sessions(live_server) -> None:
    async with live_server(overrides={"greeting": "Hello there."}) as srv:
        answer = await srv.answer()
        for _ in range(3):  # Twilio retries, or someone replays the signed request
            again = await srv.answer(call_sid=answer.call_sid)
            assert again.parameters["token"] == answer.parameters["token"]
        assert len(srv.services.prewarm) == 1
        result = await srv.call(SILENCE * 8000, answer=answer, tail_s=0.5)
        log = await final_log(srv, result.call_sid)
        assert len(srv.services.prewarm) == 0
    assert len(srv.model.connections) == 1
    assert [r["outcome"] for r in events(log, "prewarm")] == ["opened", "adopted"]


async def test_with_prewarm_off_the_stream_connects_as_before(live_server) -> None:
    async with live_server(overrides={"model_prewarm": False, "greeting": "Hello there."}) as srv:
        answer = await srv.answer()
        assert srv.services.prewarm is None
        assert not srv.model.connections  # nothing opened at the webhook
        result = await srv.call(SILENCE * 8000, answer=answer, tail_s=0.5)
        log = await final_log(srv, result.call_sid)
    assert not events(log, "prewarm") and len(srv.model.connections) == 1
    assert result.turns and result.turns[0].frames > 0


async def test_a_prewarm_that_failed_to_connect_leaves_the_stream_a_cold_connect(
    live_server,
) -> None:
    async with live_server(overrides={"greeting": "Hello there."}) as srv:
        srv.model.reject_next = 1  # the pre-warm's connect is refused
        answer = await srv.answer()
        await wait_for(
            lambda: [r for r in prewarm_log(srv, answer.call_sid) if r["outcome"] == "failed"],
            what="the refused pre-warm noted",
        )
        result = await srv.call(SILENCE * 8000, answer=answer, tail_s=0.5)
        log = await final_log(srv, result.call_sid)
    assert [r["outcome"] for r in events(log, "prewarm")] == ["opened", "failed"]
    connected = events(log, "model.connected")
    assert len(connected) == 1 and "prewarmed" not in connected[0]  # connected at `start`
    assert not events(log, "model.connect_failed")  # the stream's own connect did not fail
    assert result.turns and result.turns[0].frames > 0  # and the greeting was heard
