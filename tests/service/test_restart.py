"""What a single instance must not forget across a restart (issue 26, finding 14): a used
stream token, a CallSid it answered and streamed, a SIP delivery it accepted. Before, all three
lived in memory: after a restart a replayed ``start`` was admitted again, a replayed webhook got
a new token, and a SIP delivery was accepted twice. Now they live in
``CALL_LOG_DIR/.state.sqlite3`` (owner-only)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from helpers import AUTH_TOKEN, start_message
from processes import ServerProcess
from websockets.asyncio.client import connect

from telephony.fleet import LocalState
from telephony.simulate import answer_call
from telephony.testing import LoopbackRealtimeServer, tone

SECRET = "stream-token-secret-0123456789abcdef"


async def stream_closes_with(answer, payload: str) -> int | None:
    """Open the media socket, send ``connected`` and ``start``; the close code (None while it
    is still open after 3 s: admitted)."""
    async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(payload)
        try:
            await asyncio.wait_for(ws.wait_closed(), 3)
        except TimeoutError:
            return None
        return ws.close_code


async def test_a_restart_forgets_no_used_token_and_no_answered_call(tmp_path: Path) -> None:
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 200)) as model:
        env = {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "STREAM_TOKEN_SECRET": SECRET,
            "CALL_LOG_DIR": str(tmp_path / "calls"),
        }
        server = ServerProcess(env, tmp_path)
        try:
            await server.up()
            answer = await answer_call(server.base_url, auth_token=AUTH_TOKEN)
            start = start_message(answer.call_sid, answer.parameters)
            assert await stream_closes_with(answer, start) is None  # admitted; then hung up
            server.stop()
            server = ServerProcess(env, tmp_path, server.port)  # same port: same PUBLIC_URL
            await server.up()
            # the same start, token and all: refused, no model session
            sessions = len(model.connections)
            assert await stream_closes_with(answer, start) == 1008
            assert len(model.connections) == sessions
            # Twilio's webhook for that call again: no new token
            replayed = await server_twiml(server.base_url, answer.call_sid)
            assert '<Reject reason="busy"' in replayed
        finally:
            server.stop()
    state = tmp_path / "calls" / ".state.sqlite3"
    assert state.stat().st_mode & 0o777 == 0o600


async def server_twiml(base_url: str, call_sid: str) -> str:
    try:
        answer = await answer_call(base_url, call_sid=call_sid, auth_token=AUTH_TOKEN)
    except ValueError as exc:  # answer_call refuses TwiML without <Connect><Stream>
        return str(exc)
    return answer.twiml


async def test_claims_and_values_outlive_the_process(tmp_path: Path) -> None:
    """The SIP path's delivery claims go through the same state (``sip:webhook:…``)."""
    path = tmp_path / ".state.sqlite3"
    first = LocalState("A", path)
    assert await first.claim("sip:webhook:wh_1", time.time() + 60)
    assert await first.claim("short", time.time() - 1)  # already expired when written
    assert await first.remember("answer:CA1", "token", 60) is None
    await first.overwrite("answer:CA1", "streamed")
    await first.stop()
    again = LocalState("A", path)
    assert not await again.claim("sip:webhook:wh_1", time.time() + 60)  # a duplicate
    assert await again.claim("short", time.time() + 60)  # expired: taken anew
    assert await again.remember("answer:CA1", "new", 60) == "streamed"
    await again.unclaim("sip:webhook:wh_1")
    await again.stop()
    assert await LocalState("A", path).claim("sip:webhook:wh_1", time.time() + 60)
