"""Call simulator: play Twilio for one call against a running server.

    python -m telephony.simulate caller.ulaw --url http://127.0.0.1:8000 --speed 4 --out reply.wav

It posts the Voice webhook to ``/incoming-call`` (signed with ``X-Twilio-Signature`` when
``TWILIO_AUTH_TOKEN`` is set), follows the TwiML ``<Connect><Stream>``, streams the file as 20 ms
``media`` messages (real time, or ``--speed`` times faster), keeps streaming silence afterwards as
Twilio does, plays the agent's audio out in (virtual) real time, echoes ``mark``s once the audio
before them has played, honours ``clear``, saves what the caller heard as a stereo WAV (left:
caller, right: agent) and prints a per-turn summary.

Input: headerless μ-law 8 kHz (``.ulaw``, ``.mulaw``, ``.raw``) or a 16-bit mono PCM WAV at
8 kHz. Convert anything else with sox: ``sox in.wav -r 8000 -c 1 -e u-law -t raw out.ulaw``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import sys
import time
import urllib.parse
import urllib.request
import wave
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

from .audio import FRAME_BYTES, ULAW_SILENCE, ulaw_decode, ulaw_encode

__all__ = [
    "Answer",
    "SimulationResult",
    "Turn",
    "answer_call",
    "load_caller_audio",
    "simulate_call",
    "speech_segments",
]

FRAME_S = 0.02
STALL_GAP_S = 0.3  # a frame within this of the previous one continues the same reply


def load_caller_audio(path: Path) -> bytes:
    """Read a caller recording as μ-law 8 kHz bytes.

    Raises:
        ValueError: a WAV that is not 16-bit mono PCM at 8 kHz (the message says how to convert).
    """
    if path.suffix.lower() != ".wav":
        return path.read_bytes()
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
            raise ValueError(
                f"{path}: need 16-bit mono PCM at 8 kHz "
                f"(got {w.getnchannels()} ch, {w.getsampwidth() * 8} bit, {w.getframerate()} Hz); "
                f"convert with: sox {path} -r 8000 -c 1 -e u-law -t raw out.ulaw"
            )
        return ulaw_encode(w.readframes(w.getnframes()))


def speech_segments(
    ulaw: bytes, threshold: float = 300.0, hangover_frames: int = 15
) -> list[tuple[float, float]]:
    """Speech in μ-law 8 kHz audio as ``[(start_s, end_s)]`` by 20 ms frame energy.

    A frame is speech when its RMS (int16 units) exceeds ``threshold``; a segment ends after
    ``hangover_frames`` quiet frames (300 ms by default).
    """
    pcm = np.frombuffer(ulaw_decode(ulaw), dtype="<i2").astype(np.float64)
    n = len(pcm) // 160
    loud = [
        math.sqrt(float(np.mean(pcm[i * 160 : (i + 1) * 160] ** 2))) > threshold for i in range(n)
    ]
    segments: list[tuple[float, float]] = []
    start = None
    quiet = 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            quiet = 0
            last = i
        elif start is not None:
            quiet += 1
            if quiet >= hangover_frames:
                segments.append((start * FRAME_S, (last + 1) * FRAME_S))
                start = None
    if start is not None:
        segments.append((start * FRAME_S, (last + 1) * FRAME_S))
    return segments


@dataclass
class Turn:
    """One agent reply as the caller experienced it (times in seconds of call time)."""

    index: int
    first_frame_at: float
    latency_s: float | None  # first frame minus the end of the caller's last speech before it
    frames: int = 0
    marks_echoed: int = 0
    cleared: bool = False

    @property
    def bytes(self) -> int:
        return self.frames * FRAME_BYTES


@dataclass
class SimulationResult:
    """Everything the simulated Twilio saw. Times are call time (seconds since ``start``)."""

    call_sid: str
    stream_sid: str
    twiml: str
    stream_url: str
    parameters: dict[str, str]
    frames_sent: int = 0
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (received at, μ-law)
    played: list[tuple[float, bytes]] = field(default_factory=list)  # (plays at, μ-law)
    marks: list[tuple[str, float]] = field(default_factory=list)  # (name, received at)
    echoes: list[tuple[str, float, bool]] = field(default_factory=list)  # (name, at, cleared)
    clears: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    bad_frames: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    close_code: int | None = None
    caller_speech: list[tuple[float, float]] = field(default_factory=list)
    agent_audio_s: float = 0.0  # reply audio received
    stall_s: float = 0.0  # reply audio that arrived after it was due (the caller heard a gap)
    send_lateness_s: list[float] = field(default_factory=list)  # our own pacing error per frame

    @property
    def reply_audio(self) -> bytes:
        """All μ-law the server sent, in order (played or not)."""
        return b"".join(f for _, f in self.frames)


class _Twilio:
    """The Twilio side of one media stream, on a virtual clock ``speed`` times real time."""

    def __init__(self, ws: Any, result: SimulationResult, speed: float) -> None:
        self.ws = ws
        self.r = result
        self.speed = speed
        self.t0 = time.monotonic()
        self.play_until = 0.0  # call time at which queued agent audio finishes playing
        self.queue: list[tuple[float, float, bytes]] = []  # (start, end, frame) not yet played
        self.pending_marks: list[tuple[str, float]] = []  # (name, due)
        self.mark_wakeup = asyncio.Event()
        self.seq = 0
        self.last_frame_at = -1.0
        self.turn: Turn | None = None
        self.send_lock = asyncio.Lock()

    def now(self) -> float:
        return (time.monotonic() - self.t0) * self.speed

    async def sleep_until(self, call_time: float) -> None:
        delay = (call_time - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    async def send(self, message: dict[str, Any]) -> None:
        self.seq += 1
        message["sequenceNumber"] = str(self.seq)
        async with self.send_lock:
            await self.ws.send(json.dumps(message))

    def playing(self) -> bool:
        return self.play_until > self.now()

    # --- inbound from the server
    async def receive_loop(self) -> None:
        async for raw in self.ws:
            now = self.now()
            try:
                msg = json.loads(raw)
                event = msg["event"]
                if msg.get("streamSid") != self.r.stream_sid:
                    raise ValueError(f"wrong streamSid {msg.get('streamSid')!r}")
                if event == "media":
                    self.on_media(now, base64.b64decode(msg["media"]["payload"], validate=True))
                elif event == "mark":
                    self.on_mark(now, str(msg["mark"]["name"]))
                elif event == "clear":
                    await self.on_clear(now)
                else:
                    raise ValueError(f"unexpected event {event!r}")
            except (ValueError, KeyError, TypeError) as exc:
                self.r.bad_frames.append(f"{exc}: {str(raw)[:120]}")

    def on_media(self, now: float, frame: bytes) -> None:
        last_frame_at = self.r.frames[-1][0] if self.r.frames else None
        self.r.frames.append((now, frame))
        self.r.agent_audio_s += len(frame) / 8000
        if (
            self.turn is not None
            and not self.playing()
            and last_frame_at is not None
            and (now - last_frame_at < STALL_GAP_S)
        ):
            # the reply goes on, but its next frame came after the previous one finished playing
            self.r.stall_s += now - self.play_until
        elif self.turn is None or not self.playing():
            self.turn = Turn(len(self.r.turns), now, _latency(now, self.r.caller_speech))
            self.r.turns.append(self.turn)
        self.turn.frames += 1
        start = max(now, self.play_until)
        self.play_until = start + len(frame) / 8000
        self.queue.append((start, self.play_until, frame))

    def on_mark(self, now: float, name: str) -> None:
        self.r.marks.append((name, now))
        self.pending_marks.append((name, max(now, self.play_until)))
        self.mark_wakeup.set()

    async def on_clear(self, now: float) -> None:
        self.r.clears.append(now)
        if self.turn is not None and self.playing():  # a clear after the reply ended cuts nothing
            self.turn.cleared = True
        self.turn = None
        self.queue = [q for q in self.queue if q[0] < now]  # frames that began playing stay
        self.play_until = min(self.play_until, now)
        marks, self.pending_marks = self.pending_marks, []
        for name, _ in marks:  # Twilio echoes the marks a clear dropped, at once
            self.r.echoes.append((name, now, True))
            await self.send(
                {"event": "mark", "streamSid": self.r.stream_sid, "mark": {"name": name}}
            )

    async def mark_loop(self) -> None:
        while True:
            if not self.pending_marks:
                self.mark_wakeup.clear()
                await self.mark_wakeup.wait()
                continue
            name, due = self.pending_marks[0]
            await self.sleep_until(due)
            if not self.pending_marks or self.pending_marks[0][0] != name:
                continue  # a clear took it meanwhile
            self.pending_marks.pop(0)
            self.r.echoes.append((name, self.now(), False))
            if self.turn is not None:
                self.turn.marks_echoed += 1
            await self.send(
                {"event": "mark", "streamSid": self.r.stream_sid, "mark": {"name": name}}
            )

    # --- outbound caller audio
    async def stream(
        self,
        audio: bytes,
        tail_s: float,
        max_tail_s: float,
        min_turns: int = 0,
        dtmf: Sequence[tuple[float, str]] = (),
    ) -> None:
        keys = sorted(dtmf)
        chunk = 0
        frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
        silence = bytes([ULAW_SILENCE]) * FRAME_BYTES
        end_of_file = len(frames) * FRAME_S
        while True:
            at = chunk * FRAME_S
            if chunk < len(frames):
                frame = frames[chunk].ljust(FRAME_BYTES, bytes([ULAW_SILENCE]))
            else:
                idle_since = max(
                    end_of_file, self.play_until, self.r.frames[-1][0] if self.r.frames else 0
                )
                waiting = len(self.r.turns) < min_turns
                if (at >= idle_since + tail_s and not waiting) or at >= end_of_file + max_tail_s:
                    return
                frame = silence
            await self.sleep_until(at + FRAME_S)  # a frame leaves once its 20 ms were captured
            while keys and keys[0][0] <= at:
                _, digit = keys.pop(0)
                await self.send(
                    {
                        "event": "dtmf",
                        "streamSid": self.r.stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": digit},
                    }
                )
            await self.send(
                {
                    "event": "media",
                    "streamSid": self.r.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(chunk + 1),
                        "timestamp": str(int(at * 1000)),
                        "payload": base64.b64encode(frame).decode("ascii"),
                    },
                }
            )
            self.r.frames_sent += 1
            self.r.send_lateness_s.append(max(0.0, self.now() - (at + FRAME_S)) / self.speed)
            chunk += 1

    def played_frames(self) -> list[tuple[float, bytes]]:
        now = self.now()
        return [(s, f) for s, e, f in self.queue if s < now]


def _latency(at: float, speech: list[tuple[float, float]]) -> float | None:
    ends = [end for _, end in speech if end <= at]
    return round(at - ends[-1], 3) if ends else None


def _post_webhook(url: str, params: dict[str, str], auth_token: str | None) -> str:
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth_token:
        signature = RequestValidator(auth_token).compute_signature(url, params)
        request.add_header("X-Twilio-Signature", signature)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _parse_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None or "url" not in stream.attrib:
        raise ValueError(f"TwiML has no <Connect><Stream url>: {twiml[:200]}")
    params = {p.attrib["name"]: p.attrib.get("value", "") for p in stream.findall("Parameter")}
    return stream.attrib["url"], params


@dataclass
class Answer:
    """What the webhook answered for a new call, and how to open its media stream."""

    call_sid: str
    account_sid: str
    twiml: str
    stream_url: str
    parameters: dict[str, str]
    headers: dict[str, str]  # for the WebSocket handshake (X-Twilio-Signature when signing)


async def answer_call(
    base_url: str,
    *,
    call_sid: str | None = None,
    from_number: str = "+15550001111",
    to_number: str = "+15550002222",
    auth_token: str | None = None,
) -> Answer:
    """Post Twilio's Voice webhook for a new inbound call, as Twilio does (signed with
    ``auth_token``), and read the ``<Connect><Stream>`` out of the TwiML.

    Raises:
        ValueError: the TwiML has no ``<Connect><Stream url>`` (e.g. a ``<Reject>``).
        urllib.error.HTTPError: the webhook answered an HTTP error (403 for a bad signature).
    """
    call_sid = call_sid or "CA" + secrets.token_hex(16)
    account_sid = "AC" + "0" * 32
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    webhook = base_url.rstrip("/") + "/incoming-call"
    twiml = await asyncio.to_thread(_post_webhook, webhook, params, auth_token)
    stream_url, parameters = _parse_twiml(twiml)
    headers = {}
    if auth_token:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(stream_url, {})
    return Answer(call_sid, account_sid, twiml, stream_url, parameters, headers)


async def simulate_call(
    base_url: str,
    audio: bytes,
    *,
    speed: float = 1.0,
    tail_s: float = 1.5,
    max_tail_s: float = 20.0,
    from_number: str = "+15550001111",
    to_number: str = "+15550002222",
    auth_token: str | None = None,
    call_sid: str | None = None,
    hang_up: bool = True,
    min_turns: int = 0,
    dtmf: Sequence[tuple[float, str]] = (),
) -> SimulationResult:
    """Play one Twilio call against the server at ``base_url`` (``http://host:port``).

    Args:
        audio: caller audio, μ-law 8 kHz bytes.
        speed: virtual clock rate (1.0 is real time; 4.0 streams and plays 4× faster).
        tail_s: after the file ends, keep the line open until the agent has been silent this long.
        max_tail_s: but never longer than this after the file ends.
        auth_token: sign the webhook as Twilio does (X-Twilio-Signature).
        hang_up: send ``stop`` at the end (False: just close the socket, as a dropped line does).
        min_turns: stay on the line (within ``max_tail_s``) until this many agent replies began,
            as a caller waits for an answer.
        dtmf: keys to press, as ``(call time in seconds, digit)``; sent as Twilio ``dtmf``.

    Returns:
        A :class:`SimulationResult`. Raises ``ValueError`` if the TwiML has no stream.
    """
    answer = await answer_call(
        base_url,
        call_sid=call_sid,
        from_number=from_number,
        to_number=to_number,
        auth_token=auth_token,
    )
    call_sid, account_sid, parameters = answer.call_sid, answer.account_sid, answer.parameters
    stream_sid = "MZ" + secrets.token_hex(16)
    result = SimulationResult(call_sid, stream_sid, answer.twiml, answer.stream_url, parameters)
    result.caller_speech = speech_segments(audio)
    async with connect(answer.stream_url, additional_headers=answer.headers, max_size=2**20) as ws:
        twilio = _Twilio(ws, result, speed)
        await twilio.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        twilio.seq = 0  # Twilio numbers messages from `start`
        await twilio.send(
            {
                "event": "start",
                "streamSid": stream_sid,
                "start": {
                    "streamSid": stream_sid,
                    "accountSid": account_sid,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        twilio.t0 = time.monotonic()
        receiver = asyncio.create_task(twilio.receive_loop())
        marker = asyncio.create_task(twilio.mark_loop())
        streamer = asyncio.create_task(twilio.stream(audio, tail_s, max_tail_s, min_turns, dtmf))
        try:
            done, _ = await asyncio.wait({receiver, streamer}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                result.closed_by_server = True
            elif hang_up:
                with contextlib.suppress(Exception):
                    await twilio.send(
                        {
                            "event": "stop",
                            "streamSid": stream_sid,
                            "stop": {"accountSid": account_sid, "callSid": call_sid},
                        }
                    )
        finally:
            for task in (receiver, marker, streamer):
                task.cancel()
            await asyncio.gather(receiver, marker, streamer, return_exceptions=True)
            result.played = twilio.played_frames()
        await ws.close()
        result.close_code = ws.close_code
    return result


def save_wav(path: Path, result: SimulationResult, caller: bytes) -> None:
    """Write what the caller heard as a stereo 8 kHz WAV: left the caller, right the agent."""
    agent = np.zeros(len(caller) + (8000 * 30), dtype=np.int16)
    end = 0
    for at, frame in result.played:
        i = round(at * 8000)
        pcm = np.frombuffer(ulaw_decode(frame), dtype="<i2")
        if i + len(pcm) > len(agent):
            agent = np.concatenate((agent, np.zeros(i + len(pcm) - len(agent), np.int16)))
        agent[i : i + len(pcm)] = pcm
        end = max(end, i + len(pcm))
    total = max(end, len(caller))
    left = np.zeros(total, np.int16)
    left[: len(caller)] = np.frombuffer(ulaw_decode(caller), dtype="<i2")
    stereo = np.stack((left, agent[:total]), axis=1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())


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
        description=__doc__,
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


if __name__ == "__main__":
    sys.exit(main())
