"""Barge-in cases, before and after the guard: false interruptions, reaction, audio lost.

    python bench/barge_in.py

Each case is one real-time call to ``server.py`` (this checkout) with the loopback model: the
agent says a 3.9 s sentence (tests/fixtures/agent_reply.ulaw, as its greeting) and 1.5 s in the
caller says "mm-hm", "yeah" or "okay", coughs, really interrupts ("wait, stop, I have a
question"), or says nothing while their line echoes the agent back. Each runs twice: ``before``
is ``BARGE_IN_GUARD=false`` (every speech start the model hears interrupts: the behaviour before
the guard), ``after`` the guard with its defaults (``ECHO_CANCELLATION=true`` in the echo rows).
Per row: interruptions (a ``clear`` that cut the reply; wrong in every row but the real one),
reaction (caller speech start to the first ``clear``, ms), and the reply audio the caller lost
or heard twice (ms; a real interruption loses the rest of the reply by design).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import free_port, start_server
from telephony.audio import FRAME_BYTES, ModelToCaller, ulaw_decode
from telephony.audio.resample import Upsampler3
from telephony.simulate import Echo, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
AT_S = 1.5
TOKEN = "bench-auth-token"


def _reply() -> bytes:
    x = np.frombuffer(ulaw_decode((FIXTURES / "agent_reply.ulaw").read_bytes()), dtype="<i2")
    y = Upsampler3().feed_samples(x.astype(np.float64))
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


REPLY = _reply()


def _frames() -> list[bytes]:
    down = ModelToCaller()
    ulaw = down.feed(REPLY) + down.flush()
    ulaw += b"\xff" * (-len(ulaw) % FRAME_BYTES)
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


CASES: list[tuple[str, str | None, str, Echo | None]] = [
    ("backchannel mm-hm", "mmhm.ulaw", "Mm-hmm.", None),
    ("backchannel yeah", "yeah.ulaw", "Yeah.", None),
    ("backchannel okay", "okay.ulaw", "Okay.", None),
    ("noise burst 250 ms", "noise_burst.ulaw", "", None),
    ("echo -20 dB 80 ms", None, "", Echo(-20, 80)),
    ("echo -20 dB 250 ms + noise", None, "", Echo(-20, 250, -55)),
    ("echo -10 dB 80 ms", None, "", Echo(-10, 80)),
    ("real interruption", "wait_stop.ulaw", "Wait, stop, I have a question.", None),
    ("real interruption + echo -20 dB", "wait_stop.ulaw", "Wait, stop.", Echo(-20, 80)),
]


async def run(case: tuple[str, str | None, str, Echo | None], guard: bool) -> dict[str, Any]:
    _, fixture, heard, echo = case
    caller = b"\xff" * int(8000 * (AT_S + 0.05))
    if fixture is not None:
        caller += (FIXTURES / fixture).read_bytes()
    with tempfile.TemporaryDirectory() as logs:
        port = free_port()
        env = {
            "PORT": str(port),
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CALL_LOG_DIR": logs,
            "GREETING": "Hello.",
            "LOG_LEVEL": "warning",
            "BARGE_IN_GUARD": str(guard).lower(),
            "ECHO_CANCELLATION": str(guard and echo is not None).lower(),
        }
        async with LoopbackRealtimeServer(
            reply=lambda turn: REPLY if turn == 0 else tone(700, 300),
            heard=lambda _n: heard,
            transcript_delay_s=0.2,
        ) as model:
            env["OPENAI_REALTIME_URL"] = model.url
            server = start_server(env, Path(logs))
            try:
                result = await simulate_call(
                    f"http://127.0.0.1:{port}", caller, auth_token=TOKEN, tail_s=1.5, echo=echo
                )
            finally:
                server.terminate()
                server.wait(10)
    expected = _frames()
    played = [frame for _, frame in result.played]
    heard_frames = 0
    for got, want in zip(played, expected, strict=False):
        if got != want:
            break
        heard_frames += 1
    known = set(expected)
    repeated = sum(1 for f in played[heard_frames:] if f in known)  # reply audio out of order
    cleared = any(t.cleared for t in result.turns[:1]) or bool(result.clears)
    onset = AT_S + 0.05
    first_clear = next((c for c in result.clears if c >= onset - 0.2), None)
    return {
        "interrupted": cleared and heard_frames < len(expected),
        "reaction_ms": round((first_clear - onset) * 1000) if first_clear else None,
        "lost_ms": (len(expected) - heard_frames) * 20,
        "repeated_ms": repeated * 20,
    }


async def main() -> None:
    print("| case | before: interrupted, reaction, lost/repeated ms | after |")
    print("|---|---|---|")
    for case in CASES:
        cells = []
        for guard in (False, True):
            r = await run(case, guard)
            reaction = f"{r['reaction_ms']} ms" if r["reaction_ms"] is not None else "-"
            cells.append(
                f"{'yes' if r['interrupted'] else 'no'}, {reaction}, "
                f"{r['lost_ms']}/{r['repeated_ms']}"
            )
        print(f"| {case[0]} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
