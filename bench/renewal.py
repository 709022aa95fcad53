"""Renewal benchmark: one long call across many model-session caps, faster than real time.

    python bench/renewal.py [--hours 3] [--speed 20] [--cap 60] [--margin 20]

One ``server.py`` process (``AUDIO_AHEAD_LIMIT=0``) takes one simulated Twilio call of
``--hours`` hours of call time, streamed and played ``--speed`` times faster than real time.
The loopback OpenAI Realtime model ends every session after ``--cap`` seconds of call time as
OpenAI does at its 60-minute cap (``error`` ``session_expired``, close 1001; ``session.created``
carries ``expires_at``); the server renews ``--margin`` seconds of call time before it. Every
10 s the caller says something (1.5 s, an 80-character transcript) and the agent answers (2 s of
audio, a 160-character transcript), so the conversation outgrows ``MODEL_HISTORY_TOKENS``
(16000 tokens, about 64000 characters) within the first hour.

It prints:

- renewals (planned, or at an unannounced cap), reconnects and apologies (both should be 0);
- the switch: how long caller audio was held (wall ms, and the same in call time), and whether
  any caller audio was lost (frames sent by the caller minus frames that reached a model, not
  counting the 300 ms each new session hears again);
- replies against utterances + the greeting, and the agent audio the caller heard; the longest
  gap inside an agent reply (call time) within 1 s of a switch and elsewhere (at 20x, 5 ms of
  wall-clock jitter is 100 ms of call time: compare the two); reply latency (the caller's end
  of speech to the first frame) for the first reply after each switch against all replies;
- the history replayed at the last renewal (turns, turns left out, characters) and its most;
- the server's resident memory at the start, middle and end of the call, and its growth per
  hour of call time.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, rss_kib, start_server

from telephony.audio import ulaw_encode
from telephony.bridge.call import PREROLL_FRAMES
from telephony.observability.call_log import read_call_log
from telephony.simulate import simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

CYCLE_S = 10.0
SPEECH_S = 1.5
REPLY_MS = 2000
TOKEN = "renewal-bench-token"


def caller_audio(hours: float) -> tuple[bytes, int]:
    """``hours`` of call: every 10 s, 1.5 s of a 500 Hz 'voice' then silence. Returns the
    μ-law and the number of utterances."""
    t = np.arange(int(8000 * SPEECH_S)) / 8000
    speech = ulaw_encode(np.rint(5000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes())
    cycle = speech + b"\xff" * int(8000 * (CYCLE_S - SPEECH_S))
    count = int(hours * 3600 / CYCLE_S)
    return b"\xff" * 4000 + cycle * count, count


def caller_said(n: int) -> str:
    return f"Caller turn {n:05d}: could you tell me more about the order I placed last week?"


def agent_said(n: int) -> str:
    return (
        f"Agent turn {n:05d}: of course. Your order shipped on Tuesday and should arrive by "
        "Friday; I can send you the tracking link by text message if that would help you."
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run(hours: float, speed: float, cap: float, margin: float) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="renewal-"))
    audio, utterances = caller_audio(hours)
    port = free_port()
    wall_s = len(audio) / 8000 / speed
    env = {
        "PORT": str(port),
        "OPENAI_API_KEY": "sk-renewal-not-a-real-key",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CALL_LOG_DIR": str(logs),
        "GREETING": "Hello, thanks for calling.",
        "LOG_LEVEL": "warning",
        "AUDIO_AHEAD_LIMIT": "0",
        "MODEL_RENEWAL_MARGIN": str(margin / speed),
        "MAX_CALL_DURATION": str(wall_s + 600),
        "IDLE_TIMEOUT": "600",
    }
    rss: list[tuple[float, int]] = []  # (call time, KiB)
    async with LoopbackRealtimeServer(
        reply=lambda _: tone(600, REPLY_MS),
        transcript=caller_said,
        reply_text=agent_said,
        session_cap_s=cap / speed,
        keep_audio=False,
    ) as model:
        env["OPENAI_REALTIME_URL"] = model.url
        server = start_server(env, logs)
        try:
            await asyncio.sleep(0.5)
            t0 = time.monotonic()

            async def sample() -> None:
                while True:
                    rss.append(((time.monotonic() - t0) * speed, rss_kib(server.pid)))
                    await asyncio.sleep(max(1.0, wall_s / 200))

            sampler = asyncio.create_task(sample())
            result = await simulate_call(
                f"http://127.0.0.1:{port}",
                audio,
                speed=speed,
                tail_s=3.0,
                max_tail_s=10.0,
                auth_token=TOKEN,
            )
            sampler.cancel()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        model_frames = sum(c.audio_bytes for c in model.connections) / 960  # pcm16 24 kHz
        expires = sum(c.expired for c in model.connections)
        sessions = len(model.connections)

    log = read_call_log(logs / f"{result.call_sid}.jsonl")
    start_ts = next(r["ts"] for r in log if r["event"] == "stream.start")
    renewed = [r for r in log if r["event"] == "model.renewed"]
    switch_ms = [r["switch_ms"] for r in renewed]
    switches = [(r["ts"] - start_ts) * speed for r in renewed]  # call time
    # a frame that arrives after the one before it finished playing, less than 2 s later (the
    # replies here are 8 s apart), leaves the caller a gap inside a reply
    gaps: list[tuple[float, float]] = []  # (call time, gap s)
    play_until = 0.0
    for arrived, frame in result.frames:
        if 0.0 < arrived - play_until < 2.0:
            gaps.append((arrived, arrived - play_until))
        play_until = max(arrived, play_until) + len(frame) / 8000

    def near_switch(at: float) -> bool:
        return any(abs(at - s) < 1.0 for s in switches)

    switch_gaps = [g for at, g in gaps if near_switch(at)]
    other_gaps = [g for at, g in gaps if not near_switch(at)]
    latencies = [t.latency_s for t in result.turns if t.latency_s is not None]
    after_switch = []
    for at in switches:
        following = [t for t in result.turns if t.first_frame_at > at and t.latency_s is not None]
        if following:
            after_switch.append(following[0].latency_s)
    third = [kib for at, kib in rss if at >= len(audio) / 8000 / 3]
    end = log[-1]
    return {
        "call_hours": len(audio) / 8000 / 3600,
        "wall_s": wall_s,
        "sessions": sessions,
        "renewed_planned": sum(r["after"] == "planned" for r in renewed),
        "renewed_expired": sum(r["after"] == "session_expired" for r in renewed),
        "caps_reached": expires,
        "reconnects": sum(r["event"] == "model.reconnecting" for r in log),
        "apologies": sum(r["event"] == "call.apology" for r in log),
        "end": f"{end['event']} {end.get('reason')}",
        "switch_p50_ms": pct(switch_ms, 50),
        "switch_max_ms": max(switch_ms, default=float("nan")),
        "frames_sent": result.frames_sent,
        "frames_to_models": model_frames,
        "preroll_frames": PREROLL_FRAMES * len(renewed),
        "replies": sum(r["event"] == "response.done" for r in log),
        "replies_expected": utterances + 1,
        "agent_audio_s": result.agent_audio_s,
        "switch_gap_ms": 1000 * max(switch_gaps, default=0.0),
        "other_gap_ms": 1000 * max(other_gaps, default=0.0),
        "stall_s": result.stall_s,
        "latency_p50": pct(latencies, 50),
        "latency_p99": pct(latencies, 99),
        "after_switch_p50": pct(after_switch, 50),
        "after_switch_max": max(after_switch, default=float("nan")),
        "last_replay": renewed[-1] if renewed else {},
        "max_chars": max((r["chars"] for r in renewed), default=0),
        "rss_start": rss[1][1] / 1024 if len(rss) > 1 else float("nan"),
        "rss_mid": rss[len(rss) // 2][1] / 1024,
        "rss_end": rss[-1][1] / 1024,
        "rss_growth_per_hour": (third[-1] - third[0]) / 1024 / (hours * 2 / 3) if third else 0.0,
        "send_late_p99_ms": pct(result.send_lateness_s, 99) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=3.0, help="call length, call time")
    parser.add_argument("--speed", type=float, default=20.0, help="times faster than real time")
    parser.add_argument("--cap", type=float, default=60.0, help="session cap, s of call time")
    parser.add_argument("--margin", type=float, default=20.0, help="renewal margin, call time")
    args = parser.parse_args()
    r = asyncio.run(run(args.hours, args.speed, args.cap, args.margin))
    replay = r["last_replay"]
    print(f"call: {r['call_hours']:.2f} h of call time in {r['wall_s']:.0f} s; ended: {r['end']}")
    print(
        f"sessions {r['sessions']}: renewals {r['renewed_planned']} planned + "
        f"{r['renewed_expired']} at an unannounced cap; caps reached {r['caps_reached']}; "
        f"reconnects {r['reconnects']}; apologies {r['apologies']}"
    )
    print(
        f"switch (caller audio held): p50 {r['switch_p50_ms']:.1f} ms, max "
        f"{r['switch_max_ms']:.1f} ms wall (x{args.speed:g} in call time); caller frames sent "
        f"{r['frames_sent']}, reached a model {r['frames_to_models']:.0f} (of which heard "
        f"twice, the 300 ms before each switch: {r['preroll_frames']}): lost "
        f"{r['frames_sent'] - r['frames_to_models'] + r['preroll_frames']:.0f}"
    )
    print(
        f"replies {r['replies']} of {r['replies_expected']}, {r['agent_audio_s']:.0f} s of "
        f"agent audio heard (of {r['replies_expected'] * REPLY_MS / 1000:.0f}); longest gap "
        f"inside a reply within 1 s of a switch {r['switch_gap_ms']:.0f} ms, elsewhere "
        f"{r['other_gap_ms']:.0f} ms; reply latency p50 "
        f"{r['latency_p50']:.2f} s, p99 {r['latency_p99']:.2f} s; first reply after a switch "
        f"p50 {r['after_switch_p50']:.2f} s, max {r['after_switch_max']:.2f} s (call time)"
    )
    print(
        f"history at the last renewal: {replay.get('turns_replayed')} turns replayed, "
        f"{replay.get('turns_left_out')} left out, {replay.get('chars')} characters "
        f"(most {r['max_chars']})"
    )
    print(
        f"server RSS: start {r['rss_start']:.1f} MiB, middle {r['rss_mid']:.1f} MiB, end "
        f"{r['rss_end']:.1f} MiB; growth over the last two thirds "
        f"{r['rss_growth_per_hour']:+.2f} MiB per call-hour; caller pacing p99 late "
        f"{r['send_late_p99_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
