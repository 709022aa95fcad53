"""The agent's own voice on the caller's line: does it pause, cut itself off, or answer itself?

    python bench/echo.py [--compare OTHER_CHECKOUT] [--env NAME=VALUE ...] [--only TEXT]
                         [--parallel 4] [--backend live]

Each cell is one real-time call to ``server.py`` with the loopback model: the agent greets with
9.9 s of real speech (``tests/fixtures/agent_long_reply.ulaw``, espeak-ng) and answers anything
after with a 300 ms tone. The simulated caller's line echoes what the caller's phone played
(:class:`telephony.simulate.Echo`: echo return loss, bulk delay, path, soft clipping, line
noise, μ-law on both legs). The loopback model's VAD is an energy threshold (as OpenAI's server
VAD, it hears echo as speech) and each caller item is transcribed by a real recogniser (the
offline model's Whisper), so the guard's word checks see what echo really sounds like.

The matrix:

- **flat** paths: echo return loss 6, 10, 15, 20, 30 dB × bulk delay 20, 150, 450 ms;
- **hybrid** paths: the eight ITU-T G.168 Annex D line models at 6 dB (the worst a network may
  present) and 300 ms;
- **room**: a speakerphone, T60 0.2, 0.4 and 0.6 s, 12 dB, 60 ms, line noise at -50 dBFS;
  a loud handset (soft clipping at -12 dBFS) in a 0.3 s room at 6 dB;
- **double talk**: the caller says "Wait, stop, I have a question." (real interruption),
  "yeah", or coughs 3 s into the reply, over room echo and over a 6 dB hybrid;
- **no echo**: "mm-hm", "yeah", "okay", a noise burst, and the real interruption;
- **early**: the real interruption 0.5 s into the reply (before the judge has learned the
  line), with no echo, over the room's echo and over the 6 dB hybrid, and 0.7 s in over the
  hybrid (past the early echo fit's first 240 ms of its echo); "yeah" 0.5 s in, with no echo,
  over the room's echo and over the 6 dB hybrid.

Per cell and configuration: the reply heard whole (yes/no), pauses in it (``clear``s that
stopped it), second replies (the agent answering what was not said), and for a real
interruption whether it was honoured, the reaction (caller's first word to the ``clear``,
ms) and when the reply stopped for good (caller's first word to the end of the last reply
frame heard, ms). Columns: ``--compare``'s checkout with its defaults (``before``), this
checkout with its defaults, and this checkout with each ``--env`` setting added (e.g.
``ECHO_CANCELLATION=true``).
A summary per column counts the targets of the echo issue: no reply cut, no second reply, at
most one pause per reply, every real interruption honoured within 500 ms (p95).

With ``--backend live`` the calls run on GPT-Live (``REALTIME_BACKEND=live``) against the fake
GPT-Live server, which speaks the same reply and *yields* (stops for good) after 200 ms of
caller energy over it, as GPT-Live decides itself when to stop: the bridge can only keep the
agent's own echo from reaching it (``LIVE_ECHO_GATE``; compare with ``--env
LIVE_ECHO_GATE=false`` for the column without it). There is no pause on this backend: a cell's
reply is whole or cut where the fake yielded; an interruption's reaction is the caller's first
word to the reply's last frame played.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, other_checkout, start_server
from telephony.audio import FRAME_BYTES, ModelToCaller, ulaw_decode
from telephony.audio.resample import Downsampler3, Upsampler3
from telephony.simulate import Echo, SimulationResult, simulate_call
from telephony.simulate.echo_paths import HYBRIDS, hybrid_path, room_path
from telephony.testing import LoopbackRealtimeServer, tone
from telephony.testing.live_server import FakeLiveServer
from telephony.testing.realtime_session import ulaw_from_pcm24

FIXTURES = ROOT / "tests" / "fixtures"
TOKEN = "bench-auth-token"
AT_S = 3.0  # when the caller speaks in the double-talk and no-echo cells: mid-reply
ANSWER = tone(700, 300)
REPLY_TEXT = (  # the fixture's words, sent as the reply's transcript (the guard's word check)
    "I found your booking: a table for four on Friday at seven thirty, by the window, under "
    "the name Rivera. Please arrive ten minutes early. Shall I text you a confirmation?"
)
SPEECH_ONSET_S = 0.02  # the fixtures are trimmed to their first sound


def _pcm24(ulaw: bytes) -> bytes:
    x = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    y = Upsampler3().feed_samples(x)
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


def _frames(pcm24: bytes) -> list[bytes]:
    """The μ-law frames the bridge sends for ``pcm24`` (the same transcoder)."""
    down = ModelToCaller()
    ulaw = down.feed(pcm24) + down.flush()
    ulaw += b"\xff" * (-len(ulaw) % FRAME_BYTES)
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


def _live_frames(pcm24: bytes) -> list[bytes]:
    """The μ-law frames the fake GPT-Live server sends for ``pcm24`` (100 ms chunks)."""
    ulaw = b"".join(ulaw_from_pcm24(pcm24[i : i + 4800]) for i in range(0, len(pcm24), 4800))
    ulaw += b"\xff" * (-len(ulaw) % FRAME_BYTES)
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


REPLY = _pcm24((FIXTURES / "agent_long_reply.ulaw").read_bytes())
REPLY_FRAMES = _frames(REPLY)
ANSWER_FRAMES = set(_frames(ANSWER)) - {b"\xff" * FRAME_BYTES}
LIVE = {  # on --backend live, what the fake sends instead
    "reply": _live_frames(REPLY),
    "answer": set(_live_frames(ANSWER)) - {b"\xff" * FRAME_BYTES},
}


@dataclass(frozen=True)
class Cell:
    group: str
    name: str
    echo: Echo | None
    caller: str | None = None  # a fixture said at_s into the reply
    real: bool = False  # the caller's words are a real interruption
    at_s: float = AT_S


def matrix() -> list[Cell]:
    cells = [
        Cell("flat", f"{erl} dB {delay} ms", Echo(-erl, delay))
        for erl in (6, 10, 15, 20, 30)
        for delay in (20, 150, 450)
    ]
    cells += [
        Cell("hybrid", f"{m} 6 dB 300 ms", Echo(-6, 300, path=hybrid_path(m))) for m in HYBRIDS
    ]
    room = {t60: room_path(t60) for t60 in (0.2, 0.3, 0.4, 0.6)}
    cells += [
        Cell("room", f"T60 {t60} s 12 dB 60 ms noise", Echo(-12, 60, -50, path=room[t60]))
        for t60 in (0.2, 0.4, 0.6)
    ]
    loud = Echo(-6, 60, -50, path=room[0.3], clip_dbfs=-12)
    cells.append(Cell("room", "loud handset, T60 0.3 s 6 dB clipped", loud))
    speaker = Echo(-12, 60, -50, path=room[0.3])
    hybrid = Echo(-6, 300, path=hybrid_path("D5"))
    cells += [
        Cell("double talk", "interruption over room echo", speaker, "wait_stop.ulaw", True),
        Cell("double talk", "interruption over 6 dB hybrid", hybrid, "wait_stop.ulaw", True),
        Cell("double talk", "interruption over loud handset", loud, "wait_stop.ulaw", True),
        Cell("double talk", "yeah over room echo", speaker, "yeah.ulaw"),
        Cell("double talk", "cough over room echo", speaker, "noise_burst.ulaw"),
    ]
    cells += [
        Cell("no echo", "mm-hm", None, "mmhm.ulaw"),
        Cell("no echo", "yeah", None, "yeah.ulaw"),
        Cell("no echo", "okay", None, "okay.ulaw"),
        Cell("no echo", "noise burst", None, "noise_burst.ulaw"),
        Cell("no echo", "real interruption", None, "wait_stop.ulaw", True),
        # a caller who talks over the first words, before the echo path has been learned
        Cell("early", "interruption 0.5 s in, no echo", None, "wait_stop.ulaw", True, 0.5),
        Cell("early", "interruption 0.5 s in, room echo", speaker, "wait_stop.ulaw", True, 0.5),
        Cell("early", "interruption 0.5 s in, 6 dB hybrid", hybrid, "wait_stop.ulaw", True, 0.5),
        Cell("early", "interruption 0.7 s in, 6 dB hybrid", hybrid, "wait_stop.ulaw", True, 0.7),
        Cell("early", "yeah 0.5 s in, no echo", None, "yeah.ulaw", False, 0.5),
        Cell("early", "yeah 0.5 s in, room echo", speaker, "yeah.ulaw", False, 0.5),
        Cell("early", "yeah 0.5 s in, 6 dB hybrid", hybrid, "yeah.ulaw", False, 0.5),
    ]
    return cells


def heard_reply(result: SimulationResult, live: bool = False) -> tuple[int, int, float]:
    """(frames of the reply heard in order, second-reply frames heard, when the last reply
    frame heard played). One frame may be skipped at each resume (a media server drops the
    packet playing at a ``clear``)."""
    reply, answer = (LIVE["reply"], LIVE["answer"]) if live else (REPLY_FRAMES, ANSWER_FRAMES)
    i = 0
    answers = 0
    last_at = 0.0
    for at, frame in result.played:
        if i < len(reply) and frame == reply[i]:
            i, last_at = i + 1, at
        elif i + 1 < len(reply) and frame == reply[i + 1]:
            i, last_at = i + 2, at
        elif frame in answer:
            answers += 1
    return i, answers, last_at


def judge(cell: Cell, result: SimulationResult, live: bool = False) -> dict[str, Any]:
    heard, answer_frames, last_at = heard_reply(result, live)
    frames = len(LIVE["reply"]) if live else len(REPLY_FRAMES)
    reply_end = frames * 0.02
    onset = cell.at_s + SPEECH_ONSET_S
    clears = [c for c in result.clears if c < reply_end + 2.0]
    if live and heard < frames - 1:  # the fake yielded: its last frame is the reaction's end
        clears = [last_at + 0.02]
    first_after = next((c for c in clears if c >= onset - 0.1), None) if cell.caller else None
    whole = heard >= frames - 1
    row: dict[str, Any] = {
        "whole": whole,
        "heard_s": round(heard * 0.02, 2),
        "pauses": len(clears) if not cell.real else len([c for c in clears if c < onset]),
        "second": answer_frames > 0 and not cell.real,
    }
    if cell.real:
        honoured = not whole and first_after is not None and answer_frames > 0
        row["honoured"] = honoured
        row["reaction_ms"] = round((first_after - onset) * 1000) if first_after else None
        row["stopped_ms"] = round((last_at + 0.02 - onset) * 1000) if honoured else None
    return row


def show(row: dict[str, Any] | None) -> str:
    if row is None:
        return "failed"
    if "honoured" in row:
        reaction = f"{row['reaction_ms']} ms" if row["reaction_ms"] is not None else "-"
        verdict = "honoured" if row["honoured"] else "NOT honoured"
        stopped = f", stopped {row['stopped_ms']} ms" if row.get("stopped_ms") is not None else ""
        return f"{verdict} {reaction}{stopped}, pauses before {row['pauses']}"
    whole = "whole" if row["whole"] else f"CUT at {row['heard_s']} s"
    second = ", SECOND REPLY" if row["second"] else ""
    return f"{whole}, {row['pauses']} pauses{second}"


async def run_column(
    label: str,
    root: Path,
    extra: dict[str, str],
    cells: list[Cell],
    parallel: int,
    stack: Any,
    live: bool = False,
) -> list[dict[str, Any] | None]:
    logs = Path(tempfile.mkdtemp(prefix=f"echo-{label.replace(' ', '_')}-"))
    port = free_port()
    env = {
        "PORT": str(port),
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CALL_LOG_DIR": str(logs),
        "GREETING": "Hello.",
        "LOG_LEVEL": "warning",
        "PYTHONPATH": str(root),
        **extra,
    }

    def recognise(pcm24: bytes) -> str:
        pcm8 = np.frombuffer(Downsampler3().feed(pcm24), dtype="<i2")
        return stack.transcribe((pcm8 / 32768).astype(np.float32))

    gate = asyncio.Semaphore(parallel)
    model: Any = (
        FakeLiveServer(greeting=REPLY, reply=lambda _turn: ANSWER, yield_ms=200)
        if live
        else LoopbackRealtimeServer(
            reply=lambda turn: REPLY if turn == 0 else ANSWER,
            reply_text=lambda turn: REPLY_TEXT if turn == 0 else "Yes?",
            recognise=recognise,
            transcript_delay_s=0.2,
        )
    )
    async with model:
        if live:
            env.update(REALTIME_BACKEND="live", OPENAI_BASE_URL=model.base_url)
        else:
            env["OPENAI_REALTIME_URL"] = model.url
        server = start_server(env, logs, script=root / "server.py")

        async def one(cell: Cell) -> dict[str, Any] | None:
            caller = b"\xff" * int(8000 * cell.at_s)
            if cell.caller is not None:
                caller += (FIXTURES / cell.caller).read_bytes()
            async with gate:
                try:
                    result = await simulate_call(
                        f"http://127.0.0.1:{port}",
                        caller,
                        auth_token=TOKEN,
                        tail_s=2.0,
                        min_turns=1,
                        echo=cell.echo,
                    )
                except Exception as exc:  # a cell that fails is shown, the rest still run
                    print(f"  {cell.name} ({label}): {exc!r}", file=sys.stderr)
                    return None
            return judge(cell, result, live)

        try:
            return list(await asyncio.gather(*(one(c) for c in cells)))
        finally:
            server.terminate()
            server.wait(10)


def summary(cells: list[Cell], rows: list[dict[str, Any] | None]) -> str:
    echo_rows = [(c, r) for c, r in zip(cells, rows, strict=True) if not c.real]
    cut = sum(1 for _, r in echo_rows if r is None or not r["whole"])
    second = sum(1 for _, r in echo_rows if r is not None and r["second"])
    over = sum(1 for _, r in echo_rows if r is not None and r["pauses"] > 1)
    real = [r for c, r in zip(cells, rows, strict=True) if c.real]
    honoured = sum(1 for r in real if r is not None and r["honoured"])
    reactions = sorted(r["reaction_ms"] for r in real if r is not None and r["reaction_ms"])
    p95 = reactions[min(len(reactions) - 1, int(0.95 * len(reactions)))] if reactions else None
    median = statistics.median(reactions) if reactions else None
    return (
        f"cut {cut}/{len(echo_rows)}, second replies {second}, over one pause {over}; "
        f"interruptions honoured {honoured}/{len(real)}, reaction p50 {median} p95 {p95} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--compare", type=Path, help="another checkout, its defaults first")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE: a column more")
    parser.add_argument("--only", help="cells whose group or name contains this")
    parser.add_argument("--parallel", type=int, default=4, help="calls at once per column")
    parser.add_argument("--backend", choices=("realtime", "live"), default="realtime")
    args = parser.parse_args()
    from telephony.agent.local.stack import load_local_stack

    stack = load_local_stack()
    cells = [c for c in matrix() if not args.only or args.only in f"{c.group} {c.name}"]
    columns: list[tuple[str, Path, dict[str, str]]] = []
    if args.compare is not None:
        columns.append(("before", other_checkout(args.compare), {}))
    columns.append(("defaults", ROOT, {}))
    for setting in args.env:
        name, _, value = setting.partition("=")
        columns.append((setting, ROOT, {name: value}))
    results = []
    for label, root, extra in columns:
        live = args.backend == "live"
        results.append(await run_column(label, root, extra, cells, args.parallel, stack, live))
    print("| group | cell | " + " | ".join(label for label, _, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for i, cell in enumerate(cells):
        shown = " | ".join(show(rows[i]) for rows in results)
        print(f"| {cell.group} | {cell.name} | {shown} |")
    print()
    for (label, _, _), rows in zip(columns, results, strict=True):
        print(f"{label}: {summary(cells, rows)}")


if __name__ == "__main__":
    asyncio.run(main())
