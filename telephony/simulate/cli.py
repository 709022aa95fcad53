"""The simulator's command line: ``python -m telephony.simulate`` (also ``telephony-simulate``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from . import __doc__ as DESCRIPTION
from .audio_files import load_caller_audio, save_wav
from .call import simulate_call
from .twilio_side import SimulationResult

__all__ = ["main", "summary"]


def summary(result: SimulationResult) -> str:
    """A per-turn table of the call, as printed by the command."""
    lines = [
        f"call {result.call_sid}  stream {result.stream_sid}",
        f"caller audio: {result.frames_sent} frames sent; speech at "
        + ", ".join(f"{a:.2f}-{b:.2f}s" for a, b in result.caller_speech),
        "turn  first frame  reply latency  frames  bytes   marks echoed  cleared",
    ]
    for t in result.turns:
        latency = f"{t.latency_s * 1000:8.0f} ms" if t.latency_s is not None else "         -"
        lines.append(
            f"{t.index:>4}  {t.first_frame_at:9.2f} s  {latency}   {t.frames:>6}  {t.bytes:>6}"
            f"  {t.marks_echoed:>12}  {'yes' if t.cleared else 'no'}"
        )
    lines.append(
        f"totals: {len(result.frames)} frames received, {len(result.marks)} marks, "
        f"{len(result.clears)} clears, {len(result.bad_frames)} malformed; "
        f"{'server' if result.closed_by_server else 'caller'} ended the call"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.simulate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file", type=Path, help="caller audio: .ulaw/.raw μ-law 8 kHz, or 8 kHz WAV"
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--speed", type=float, default=1.0, help="clock rate (1 = real time)")
    parser.add_argument("--tail", type=float, default=3.0, help="seconds of agent silence to wait")
    parser.add_argument("--max-tail", type=float, default=30.0, help="longest wait after the file")
    parser.add_argument(
        "--wait-turns", type=int, default=1, help="stay on until this many replies began"
    )
    parser.add_argument("--out", type=Path, default=None, help="save what the caller heard (WAV)")
    parser.add_argument("--from", dest="from_number", default="+15550001111")
    parser.add_argument("--to", dest="to_number", default="+15550002222")
    args = parser.parse_args(argv)
    try:
        audio = load_caller_audio(args.file)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    token = os.environ.get("TWILIO_AUTH_TOKEN") or None
    result = asyncio.run(
        simulate_call(
            args.url,
            audio,
            speed=args.speed,
            tail_s=args.tail,
            max_tail_s=args.max_tail,
            from_number=args.from_number,
            to_number=args.to_number,
            auth_token=token,
            min_turns=args.wait_turns,
        )
    )
    print(summary(result))
    if args.out:
        save_wav(args.out, result, audio)
        print(f"saved {args.out}")
    return 0
