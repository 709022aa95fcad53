"""Soak run: many calls, some hostile, against a real ``server.py`` process and a loopback model.

    python bench/soak.py [--sequential 500] [--concurrent 50] [--speed 20]

The server runs as a subprocess (so its memory is its own); the loopback OpenAI Realtime model
and the simulated Twilio side run here. Every 10th call also sends malformed frames (bad JSON,
unknown events, bad base64, wrong streamSid, binary frames); every 7th model connection drops
itself with 1011 after 600 ms of audio (the call reconnects once). It prints, and exits 1 unless
all hold: zero unhandled exceptions in the server's output, every call log with exactly one
``call.end``, and the server's resident memory after the run within 10 % of its memory after
the first 50 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, rss_kib, start_server

from telephony.audio import ulaw_encode
from telephony.observability.call_log import read_call_log
from telephony.simulate import answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-auth-token"


def caller_audio() -> bytes:
    """1 s of a 500 Hz 'utterance' then 1 s of silence: one turn per call."""
    t = np.arange(8000) / 8000
    speech = np.rint(5000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes()
    return ulaw_encode(speech) + b"\xff" * 8000


async def hostile_call(base_url: str, audio: bytes) -> None:
    """A call whose stream carries malformed frames among good ones, then hangs up."""
    from websockets.asyncio.client import connect

    answer = await answer_call(base_url, auth_token=TOKEN)
    sid = "MZ" + secrets.token_hex(16)
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": sid,
        "start": {
            "streamSid": sid,
            "callSid": answer.call_sid,
            "customParameters": answer.parameters,
        },
    }
    bad: list[str | bytes] = [
        "{not json",
        json.dumps({"event": "bogus", "streamSid": sid}),
        json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "@@"}}),
        json.dumps({"event": "media", "streamSid": "MZwrong", "media": {"payload": ""}}),
        b"\x00\x01binary",
    ]
    async with connect(answer.stream_url, additional_headers=answer.headers) as ws:
        reader = asyncio.create_task(_drain(ws))  # read what the server sends, as Twilio does
        await ws.send(json.dumps(start))
        for i in range(0, len(audio), 160):
            if i // 160 % 10 == 0 and bad:
                await ws.send(bad.pop())
            payload = base64.b64encode(audio[i : i + 160]).decode()
            await ws.send(
                json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})
            )
            await asyncio.sleep(0.002)
        await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
        await asyncio.wait_for(reader, 10)


async def _drain(ws: object) -> None:
    async for _ in ws:  # type: ignore[attr-defined]
        pass


async def one_call(base_url: str, audio: bytes, n: int, speed: float) -> None:
    if n % 10 == 9:
        await hostile_call(base_url, audio)
    else:
        await simulate_call(base_url, audio, speed=speed, tail_s=0.3, auth_token=TOKEN, min_turns=1)


async def soak(sequential: int, concurrent: int, speed: float) -> int:
    audio = caller_audio()
    logs = Path(tempfile.mkdtemp(prefix="soak-calls-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 400)) as model:
        model.drop_rule = lambda n: 1011 if n % 7 == 6 else None
        env = {
            "PORT": str(port),
            "OPENAI_API_KEY": "sk-soak-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CALL_LOG_DIR": str(logs),
            "MAX_CONCURRENT_CALLS": str(max(concurrent, 1) + 10),
            "LOG_LEVEL": "warning",
            "DRAIN_TIMEOUT": "5",
            "AUDIO_AHEAD_LIMIT": "0",  # the callers replay faster than real time
        }
        server = start_server(env, logs)
        try:
            t0 = time.monotonic()
            failures = 0
            rss_50 = 0
            for n in range(sequential):
                try:
                    await one_call(base_url, audio, n, speed)
                except Exception as exc:  # the load generator's view; the server is judged below
                    failures += 1
                    print(f"call {n}: {type(exc).__name__}: {exc}")
                if n == 49:
                    await asyncio.sleep(0.5)
                    rss_50 = rss_kib(server.pid)
            t_seq = time.monotonic() - t0
            await asyncio.sleep(0.5)
            rss_seq = rss_kib(server.pid)
            t1 = time.monotonic()
            results = await asyncio.gather(
                *(one_call(base_url, audio, n, speed / 5) for n in range(concurrent)),
                return_exceptions=True,
            )
            failures += sum(isinstance(r, Exception) for r in results)
            t_conc = time.monotonic() - t1
            await asyncio.sleep(1.0)
            rss_end = rss_kib(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    output = (logs / "server.out").read_text(errors="replace")
    tracebacks = output.count("Traceback")
    call_logs = [p for p in logs.glob("*.jsonl")]
    ends = [[r["event"] for r in read_call_log(p)].count("call.end") for p in call_logs]
    streamed = [p for p in call_logs if any(r["event"] == "stream.start" for r in read_call_log(p))]
    without_end = sum(1 for p, e in zip(call_logs, ends, strict=True) if p in streamed and e != 1)
    reasons: dict[str, int] = {}
    reconnects = 0
    for p in streamed:
        records = read_call_log(p)
        reconnects += sum(r["event"] == "model.reconnecting" for r in records)
        reason = records[-1].get("reason", "?")
        reasons[reason] = reasons.get(reason, 0) + 1
    growth = (rss_end - rss_50) / rss_50 * 100 if rss_50 else float("nan")
    print(f"sequential calls: {sequential} in {t_seq:.1f} s; ", end="")
    print(f"concurrent: {concurrent} in {t_conc:.1f} s")
    print(
        f"calls streamed: {len(streamed)}; model connections: {len(model.connections)}; "
        f"reconnects: {reconnects}; load-generator errors: {failures}"
    )
    print(f"call.end reasons: {dict(sorted(reasons.items()))}")
    print(f"calls without exactly one call.end: {without_end}")
    print(f"unhandled exceptions (tracebacks) in server output: {tracebacks}")
    print(
        f"server RSS after 50 calls: {rss_50 / 1024:.1f} MiB; after {sequential} sequential: "
        f"{rss_seq / 1024:.1f} MiB; after all: {rss_end / 1024:.1f} MiB ({growth:+.1f} %)"
    )
    ok = (
        tracebacks == 0
        and without_end == 0
        and abs(growth) <= 10
        and len(streamed) == sequential + concurrent
    )
    print("PASS" if ok else "FAIL", f"(logs in {logs})")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument(
        "--speed", type=float, default=20.0, help="caller clock for sequential calls"
    )
    args = parser.parse_args()
    return asyncio.run(soak(args.sequential, args.concurrent, args.speed))


if __name__ == "__main__":
    sys.exit(main())
