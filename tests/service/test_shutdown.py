"""SIGTERM with calls in flight, against a real ``python server.py`` process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from helpers import (
    AUTH_TOKEN,
    fixture_audio,
    wait_for,
)
from processes import ServerProcess, free_port, http_status

from telephony.observability.call_log import read_call_log
from telephony.simulate import answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

RUNTIME = "serving with event loop uvloop, HTTP httptools, WebSocket websockets-sansio"

ROOT = Path(__file__).resolve().parents[2]


async def test_sigterm_drains_calls_and_every_log_ends(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # 32 s (16 s at twice real time): longer than the drain allows, however late the last
    # call starts on a loaded machine (the drain ends them: no longer a test)
    caller = fixture_audio("numbers.ulaw") * 8
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 300)) as model:
        env = {
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CALL_LOG_DIR": str(tmp_path / "calls"),
            "DRAIN_TIMEOUT": "1",
            "AUDIO_AHEAD_LIMIT": "0",  # the callers replay at twice real time
        }
        server = ServerProcess(env, tmp_path, port)
        try:
            await server.up()
            calls = [
                asyncio.create_task(
                    simulate_call(base_url, caller, speed=2, tail_s=1, auth_token=AUTH_TOKEN)
                )
                for _ in range(3)
            ]
            await wait_for(
                lambda: sum(c.audio_ms > 500 for c in model.connections) == 3,
                30,
                "all three calls talking to the model",
            )
            server.signal(signal.SIGTERM)

            async def draining() -> bool:
                return await asyncio.to_thread(http_status, base_url + "/readyz") == 503

            # draining: not ready, and a new call is answered busy
            await wait_for(draining, 10, "/readyz 503 after SIGTERM")
            busy = await asyncio.to_thread(_twiml_of_new_call, base_url)
            assert '<Reject reason="busy"' in busy
            results = await asyncio.wait_for(asyncio.gather(*calls), 20)
            code = await server.wait(20)
        finally:
            server.stop()
    assert code == 0, server.output[-2000:]
    # each process runs on uvloop and httptools (uvicorn falls back silently)
    assert server.output.count(RUNTIME) == 1, server.output[-3000:]
    assert all(r.closed_by_server for r in results)  # ended by us, not by the callers
    logs = [read_call_log(p) for p in sorted((tmp_path / "calls").glob("*.jsonl"))]
    ended = [log for log in logs if any(r["event"] == "stream.start" for r in log)]
    assert len(ended) == 3
    for log in ended:
        assert [r["event"] for r in log].count("call.end") == 1
        assert log[-1]["event"] == "call.end" and log[-1]["reason"] == "server_shutdown"
        assert log[-1]["frames_in"] > 50


def _twiml_of_new_call(base_url: str) -> str:
    async def post() -> str:
        try:
            await answer_call(base_url, auth_token=AUTH_TOKEN)
        except ValueError as exc:  # no <Connect><Stream>: the TwiML is in the message
            return str(exc)
        return "answered"

    return asyncio.run(post())
