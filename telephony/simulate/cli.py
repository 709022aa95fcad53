"""The simulator's command line: ``python -m telephony.simulate`` (also ``telephony-simulate``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.error
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from ..observability.call_log import read_call_log
from ..twilio.trial import TRIAL_KEY_FILE, read_trial_key
from .audio_files import load_caller_audio, save_wav
from .call import answer_call, simulate_call
from .twilio_side import SimulationResult

__all__ = ["main", "summary"]

DESCRIPTION = """\
Play Twilio for one call against a running server: post the signed Voice webhook to
/incoming-call, follow the TwiML <Connect><Stream>, stream the caller's recording as
20 ms media messages (real time, or --speed times faster), play the agent's audio,
echo marks, honour clear, then print a per-turn summary and save what the caller heard
(a stereo WAV: left the caller, right the agent).

Signing: with TWILIO_AUTH_TOKEN (environment or .env) it signs as Twilio does, for
PUBLIC_URL when that is set; without it, with the trial key the server made in
CALL_LOG_DIR/.trial-key (trial mode). Input: headerless mu-law 8 kHz (.ulaw, .raw)
or a 16-bit mono 8 kHz WAV; convert anything else with
    sox in.wav -r 8000 -c 1 -e u-law -t raw out.ulaw

example:
    .venv/bin/python -m telephony.simulate tests/fixtures/goforward.ulaw
"""


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


def _setting(name: str, dotenv: dict[str, Any]) -> str | None:
    """A server setting as the server reads it: the environment, else ``.env``."""
    value = os.environ.get(name) or dotenv.get(name)
    return str(value) if value else None


def _server_says(log_dir: Path, call_sid: str) -> list[str]:
    """What the server's own call log says went wrong (when it runs on this machine)."""
    path = log_dir / f"{call_sid}.jsonl"
    if not path.exists():
        return []
    records = read_call_log(path)
    notes = []
    end = records[-1] if records and records[-1].get("event") == "call.end" else {}
    dropped = end.get("audio_dropped_ms")
    if dropped:
        notes.append(
            f"the server dropped {dropped / 1000:.1f} s of caller audio that ran ahead of real "
            "time: replay at --speed 1, or run the server with AUDIO_AHEAD_LIMIT=0"
        )
    failures = [r for r in records if r.get("event") in ("model.connect_failed", "model.error")]
    if failures:
        notes.append(f"the model failed: {failures[-1].get('error')}")
    if end and not end.get("frames_out"):
        notes.append(f"the agent said nothing; the call ended: {end.get('reason')}")
    return notes


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
    parser.add_argument(
        "--public-url",
        help="the URL Twilio would request, to sign for (default: PUBLIC_URL, else --url)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="clock rate (1 = real time)")
    parser.add_argument("--tail", type=float, default=3.0, help="seconds of agent silence to wait")
    parser.add_argument("--max-tail", type=float, default=30.0, help="longest wait after the file")
    parser.add_argument(
        "--wait-turns", type=int, default=1, help="stay on until this many replies began"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="WAV of what the caller heard (default: simulations/<CallSid>.wav)",
    )
    parser.add_argument("--from", dest="from_number", default="+15550001111")
    parser.add_argument("--to", dest="to_number", default="+15550002222")
    args = parser.parse_args(argv)
    try:
        audio = load_caller_audio(args.file)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    dotenv = dotenv_values(".env") if Path(".env").exists() else {}
    log_dir = Path(_setting("CALL_LOG_DIR", dotenv) or "./calls")
    token = _setting("TWILIO_AUTH_TOKEN", dotenv) or read_trial_key(log_dir)
    public_url = args.public_url or _setting("PUBLIC_URL", dotenv)
    try:
        result = asyncio.run(_call(args, audio, token, public_url))
    except urllib.error.HTTPError as exc:
        print(_refused(exc.code, args.url, token, public_url, log_dir), file=sys.stderr)
        return 1
    except (urllib.error.URLError, ConnectionError) as exc:
        print(
            f"no server answers at {args.url} ({getattr(exc, 'reason', exc)}): start it with "
            "`.venv/bin/python server.py`, or give --url",
            file=sys.stderr,
        )
        return 1
    print(summary(result))
    for note in _server_says(log_dir, result.call_sid):
        print(f"note: {note}")
    out = args.out or Path("simulations") / f"{result.call_sid}.wav"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_wav(out, result, audio)
    print(f"saved what the caller heard: {out}")
    return 0


async def _call(
    args: argparse.Namespace, audio: bytes, token: str | None, public_url: str | None
) -> SimulationResult:
    answer = await answer_call(
        args.url,
        from_number=args.from_number,
        to_number=args.to_number,
        auth_token=token,
        public_url=public_url,
    )
    return await simulate_call(
        args.url,
        audio,
        speed=args.speed,
        tail_s=args.tail,
        max_tail_s=args.max_tail,
        min_turns=args.wait_turns,
        answer=answer.via(args.url) if public_url else answer,
    )


def _refused(
    status: int, url: str, token: str | None, public_url: str | None, log_dir: Path
) -> str:
    if status != 403:
        return f"the server answered HTTP {status} at {url}/incoming-call (see its log)"
    if token is None:
        return (
            f"the server refused the call (403): this command has no key to sign with: set "
            f"TWILIO_AUTH_TOKEN as the server has it, or run the server without one (trial "
            f"mode: it writes {log_dir / TRIAL_KEY_FILE}, which this command reads)"
        )
    signed_for = public_url or url
    return (
        f"the server refused the call (403): it did not accept a signature for {signed_for}. "
        "Sign with the server's TWILIO_AUTH_TOKEN (environment or .env, or run both from the "
        "same folder) and for its PUBLIC_URL (--public-url); the server's log says why"
    )
