"""``WORKERS=N python server.py``: N worker processes on one port sharing Redis, draining on
SIGTERM; and refused at start-up without Redis."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from helpers import AUTH_TOKEN, fixture_audio, wait_for
from processes import ROOT, RedisServer, ServerProcess, http_status

from telephony.observability.call_log import read_call_log
from telephony.simulate import simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

RUNTIME = "serving with event loop uvloop, HTTP httptools, WebSocket websockets-sansio"


def test_more_than_one_worker_without_redis_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "server.py")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "WORKERS": "2", "ALLOW_UNSIGNED": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WORKERS > 1 needs REDIS_URL" in result.stderr


async def test_two_workers_share_the_calls_and_drain_on_sigterm(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    # 24 s (12 s at twice real time): still talking when SIGTERM comes, however late the last
    # of the 12 calls starts on a loaded machine (the drain ends them: no longer a test)
    caller = fixture_audio("numbers.ulaw") * 6
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 300)) as model:
        env = {
            "WORKERS": "2",
            "REDIS_URL": redis.url,
            "STREAM_TOKEN_SECRET": "workers-stream-token-secret-0123456789",
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CALL_LOG_DIR": str(tmp_path / "calls"),
            "DRAIN_TIMEOUT": "1",
            "AUDIO_AHEAD_LIMIT": "0",  # the callers replay at twice real time
            "FLEET_HEARTBEAT": "0.5",
            "FLEET_LEASE": "3",
        }
        server = ServerProcess(env, tmp_path)
        try:
            await server.up()
            # both workers have loaded the app and listen (each says so once it serves)
            await wait_for(lambda: server.output.count(RUNTIME) == 2, 60, "two workers serving")
            calls = [
                asyncio.create_task(
                    simulate_call(server.base_url, caller, speed=2, auth_token=AUTH_TOKEN)
                )
                for _ in range(12)
            ]
            await wait_for(
                lambda: sum(c.audio_ms > 500 for c in model.connections) == 12,
                30,
                "all 12 calls talking to the model",
            )
            server.signal(signal.SIGTERM)  # the supervisor forwards it to every worker
            # it looks at its signals every 0.5 s; then the worker that answers is draining
            for _ in range(100):
                await asyncio.sleep(0.1)
                if await asyncio.to_thread(http_status, server.base_url + "/readyz") == 503:
                    break
            else:
                raise AssertionError("/readyz never said 503 while draining")
            results = await asyncio.wait_for(asyncio.gather(*calls), 30)
            code = await server.wait(30)
        finally:
            server.stop()
            redis.kill()
    assert code == 0, server.output[-3000:]
    # each process runs on uvloop and httptools (uvicorn falls back silently)
    assert server.output.count(RUNTIME) == 2, server.output[-3000:]
    assert all(r.closed_by_server for r in results)
    logs = [read_call_log(p) for p in sorted((tmp_path / "calls").glob("*.jsonl"))]
    streamed = [log for log in logs if any(r["event"] == "stream.start" for r in log)]
    assert len(streamed) == 12
    instances = set()
    for log in streamed:
        assert [r["event"] for r in log].count("call.end") == 1
        # (the worker that answered the webhook may note its pre-warm's close after it)
        end = next(r for r in log if r["event"] == "call.end")
        assert end["reason"] == "server_shutdown"
        instances.add(end["instance"])
    # both workers carried calls (SO_REUSEPORT spreads them; all 12 on one: p = 2^-11)
    assert len(instances) == 2, instances
