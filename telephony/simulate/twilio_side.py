"""The Twilio side of one simulated media stream: what Twilio sends, plays, echoes and clears.

Plays the agent's audio out on a virtual clock, echoes ``mark``s once the audio before them has
played (in order with the caller's frames, as the media server does), honours ``clear``
(echoing the marks it dropped at once), streams the caller's audio as 20 ms ``media``
messages, and records everything in a :class:`SimulationResult`.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import FRAME_BYTES, ULAW_SILENCE, ulaw_decode, ulaw_encode
from .audio_files import FRAME_S, speech_segments
from .clock import clock_pair

__all__ = ["FRAME_S", "Echo", "Say", "SimulationResult", "Turn", "TwilioSide"]

# agent audio that comes after the last ran out continues the same reply (a stall: the caller
# hears a gap) unless the caller spoke since it began, or the gap was long both in call time
# and in wall time (a fast replay on a busy machine stretches a small hiccup in call time)
REPLY_GAP_S = 1.0
# the caller waits for the agent at least this long in wall time before hanging up: on a busy
# machine (or in a fast replay) a short silence is the server's lateness, not the agent's end
TAIL_WALL_MIN_S = 1.0
MAX_TAIL_WALL_MIN_S = 5.0  # and waits for an answer at least this long
REPLY_GAP_WALL_S = 0.5


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


@dataclass(frozen=True)
class Say:
    """A caller utterance timed by what the caller heard, as a person answers, not by the clock.

    It starts once the caller has heard ``heard_s`` seconds of the agent since they last spoke
    (or since the call began): played 20 ms packets are counted, so a slow reply, a pause or
    a stall moves it with the audio. With ``heard_s=None`` it starts once the agent has said
    something since and then been quiet for ``quiet_s``. Utterances play one after another,
    each once the caller's audio before it (the call's file, then earlier utterances) is sent.

    Args:
        audio: μ-law 8 kHz bytes.
        heard_s: seconds of the agent heard first; None: wait for the agent to finish.
        quiet_s: with ``heard_s=None``, seconds of quiet after the agent's audio.
    """

    audio: bytes
    heard_s: float | None = None
    quiet_s: float = 0.0


@dataclass(frozen=True)
class Echo:
    """The caller's line sends back what it plays: a speakerphone, a car kit, hybrid echo.

    The agent's audio as it played is mixed into the caller's audio ``delay_ms`` later at
    ``gain_db`` (negative: the echo return loss), through ``path`` (an impulse response at
    8 kHz of unit energy, from :mod:`.echo_paths`; empty: flat), after the handset's
    loudspeaker soft-clipped it at ``clip_dbfs`` (None: no clipping), with white line noise at
    ``noise_dbfs`` (None: none), then μ-law encoded again as the phone network carries it.
    """

    gain_db: float = -10.0
    delay_ms: float = 80.0
    noise_dbfs: float | None = None
    seed: int = 1
    path: tuple[float, ...] = ()
    clip_dbfs: float | None = None


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
    # of 20 ms: each media payload is played (and listed here) in 160-byte pieces
    media_messages: list[int] = field(default_factory=list)  # payload bytes of each one
    played: list[tuple[float, bytes]] = field(default_factory=list)  # (plays at, μ-law)
    marks: list[tuple[str, float]] = field(default_factory=list)  # (name, received at)
    echoes: list[tuple[str, float, bool]] = field(default_factory=list)  # (name, at, cleared)
    mark_due: dict[str, float] = field(default_factory=dict)  # name -> its audio finished playing
    clears: list[float] = field(default_factory=list)
    # per clear: how far this side's playout clock ran ahead of the caller audio it had sent
    # when it read the clear (call time, s; under 20 ms unless this side's loop ran late):
    # audio the caller heard past the clear's point on the caller's audio clock
    clear_lag_s: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    bad_frames: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    close_code: int | None = None
    caller_speech: list[tuple[float, float]] = field(default_factory=list)
    agent_audio_s: float = 0.0  # reply audio received
    stall_s: float = 0.0  # reply audio that arrived after it was due (the caller heard a gap)
    send_lateness_s: list[float] = field(default_factory=list)  # our own pacing error per frame
    said: list[float] = field(default_factory=list)  # call time each :class:`Say` began
    started_wall: float = 0.0  # ``time.time()`` at call time 0 (the ``start`` message)
    speed: float = 1.0  # call time runs this many times real time

    def call_time(self, wall: float) -> float:
        """Call time (seconds) of a ``time.time()`` reading, such as a call log record's
        ``ts``: the server runs in the same process in the tests, on the same clock."""
        return (wall - self.started_wall) * self.speed

    @property
    def reply_audio(self) -> bytes:
        """All μ-law the server sent, in order (played or not)."""
        return b"".join(f for _, f in self.frames)


class TwilioSide:
    """The Twilio side of one media stream, on a virtual clock ``speed`` times real time."""

    def __init__(
        self, ws: Any, result: SimulationResult, speed: float, echo: Echo | None = None
    ) -> None:
        self.ws = ws
        self.echo = echo
        self._noise = np.random.default_rng(echo.seed) if echo is not None else None
        self.r = result
        self.speed = speed
        self.t0 = time.monotonic()
        self.play_until = 0.0  # call time at which queued agent audio finishes playing
        self.queue: list[tuple[float, float, bytes]] = []  # (start, end, frame) not yet played
        self.pending_marks: list[tuple[str, float]] = []  # (name, due)
        self.seq = 0
        self.last_frame_at = -1.0
        self.turn: Turn | None = None
        self.starts: list[float] = []  # call times the agent's frames start playing, in order
        self.send_lock = asyncio.Lock()
        self.ended: asyncio.Event | None = None  # set: the call leaves the stream (stop)

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

    async def open(self, account_sid: str) -> None:
        """``connected`` then ``start`` (with the TwiML's parameters), as Twilio opens a stream."""
        r = self.r
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.seq = 0  # Twilio numbers messages from `start`
        await self.send(
            {
                "event": "start",
                "streamSid": r.stream_sid,
                "start": {
                    "streamSid": r.stream_sid,
                    "accountSid": account_sid,
                    "callSid": r.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": r.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self.t0, self.r.started_wall = clock_pair()
        self.r.speed = self.speed

    async def run(
        self,
        audio: bytes,
        tail_s: float,
        max_tail_s: float,
        min_turns: int,
        dtmf: Sequence[tuple[float, str]],
        hang_up: bool,
        account_sid: str,
        script: Sequence[Say] = (),
    ) -> None:
        """Stream the caller's audio while playing and echoing the agent's, until the caller is
        done (then ``stop`` if ``hang_up``) or the server closes the socket."""
        receiver = asyncio.create_task(self.receive_loop())
        streamer = asyncio.create_task(
            self.stream(audio, tail_s, max_tail_s, min_turns, dtmf, script)
        )
        try:
            done, _ = await asyncio.wait({receiver, streamer}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                self.r.closed_by_server = True
            elif hang_up:
                stop = {"accountSid": account_sid, "callSid": self.r.call_sid}
                with contextlib.suppress(Exception):
                    await self.send({"event": "stop", "streamSid": self.r.stream_sid, "stop": stop})
        finally:
            for task in (receiver, streamer):
                task.cancel()
            await asyncio.gather(receiver, streamer, return_exceptions=True)
            self.r.played = self.played_frames()

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
                    payload = base64.b64decode(msg["media"]["payload"], validate=True)
                    self.r.media_messages.append(len(payload))
                    for i in range(0, len(payload), FRAME_BYTES):  # played as 20 ms packets
                        self.on_media(now, payload[i : i + FRAME_BYTES])
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
        if self.turn is not None and not self.playing() and self._stalled(now, last_frame_at):
            # the reply goes on, but its next frame came after the previous one finished playing
            self.r.stall_s += now - self.play_until
        elif self.turn is None or not self.playing():
            self.turn = Turn(len(self.r.turns), now, _latency(now, self.r.caller_speech))
            self.r.turns.append(self.turn)
        self.turn.frames += 1
        start = max(now, self.play_until)
        self.starts.append(start)
        self.play_until = start + len(frame) / 8000
        self.queue.append((start, self.play_until, frame))

    def _stalled(self, now: float, last_frame_at: float | None) -> bool:
        """Whether audio arriving at ``now``, with nothing playing, continues the current
        reply (see ``REPLY_GAP_S``)."""
        assert self.turn is not None
        if last_frame_at is None:
            return False
        began = self.turn.first_frame_at
        if any(began < start <= now for start, _ in self.r.caller_speech):
            return False  # the caller spoke: this is an answer to that
        gap = now - last_frame_at
        return gap < REPLY_GAP_S or gap / self.speed < REPLY_GAP_WALL_S

    def on_mark(self, now: float, name: str) -> None:
        self.r.marks.append((name, now))
        self.r.mark_due[name] = max(now, self.play_until)
        self.pending_marks.append((name, self.r.mark_due[name]))

    async def on_clear(self, now: float) -> None:
        # decided at once, before anything else runs: marks whose audio had played by now
        # are echoed as played, the rest (dropped by the clear) as cleared, at once
        played = [name for name, due in self.pending_marks if due <= now]
        dropped = [name for name, due in self.pending_marks if due > now]
        self.pending_marks = []
        self.r.clears.append(now)
        self.r.clear_lag_s.append(max(0.0, now - self.r.frames_sent * FRAME_S))
        if self.turn is not None and self.playing():  # a clear after the reply ended cuts nothing
            self.turn.cleared = True
        self.turn = None
        self.queue = [q for q in self.queue if q[0] < now]  # frames that began playing stay
        del self.starts[bisect.bisect_left(self.starts, now) :]
        self.play_until = min(self.play_until, now)
        for name, cleared in [(n, False) for n in played] + [(n, True) for n in dropped]:
            self.r.echoes.append((name, now, cleared))
            await self.send(
                {"event": "mark", "streamSid": self.r.stream_sid, "mark": {"name": name}}
            )

    async def echo_marks(self, until: float) -> None:
        """Echo the marks whose audio has played by call time ``until``. The stream sends
        them in order with the caller's frames, as Twilio's media server does: where an echo
        falls among the frames is the audio clock of the playout, however late the event
        loop runs."""
        while self.pending_marks and self.pending_marks[0][1] <= until:
            name, _ = self.pending_marks.pop(0)
            self.r.echoes.append((name, self.now(), False))
            if self.turn is not None:
                self.turn.marks_echoed += 1
            await self.send(
                {"event": "mark", "streamSid": self.r.stream_sid, "mark": {"name": name}}
            )

    # --- outbound caller audio
    def cue_due(self, say: Say, now: float) -> bool:
        """Whether the caller starts ``say`` at call time ``now``: by the agent's audio played
        since the caller's last speech ended (:attr:`SimulationResult.caller_speech`)."""
        since = self.r.caller_speech[-1][1] if self.r.caller_speech else 0.0
        first = bisect.bisect_right(self.starts, since)
        heard = bisect.bisect_right(self.starts, now) - first
        if say.heard_s is not None:
            return heard * FRAME_S >= say.heard_s - 1e-9
        return heard > 0 and now >= self.play_until + say.quiet_s

    async def stream(
        self,
        audio: bytes,
        tail_s: float,
        max_tail_s: float,
        min_turns: int = 0,
        dtmf: Sequence[tuple[float, str]] = (),
        script: Sequence[Say] = (),
    ) -> None:
        keys = sorted(dtmf)
        cues = deque(script)
        chunk = 0
        frames = _frames(audio)
        silence = bytes([ULAW_SILENCE]) * FRAME_BYTES
        end_of_file = len(frames) * FRAME_S
        while True:
            at = chunk * FRAME_S
            if self.ended is not None and self.ended.is_set():
                return
            if chunk >= len(frames) and cues and self.cue_due(cues[0], at):
                say = cues.popleft()
                self.r.said.append(at)
                self.r.caller_speech += [(at + a, at + b) for a, b in speech_segments(say.audio)]
                frames += [silence] * (chunk - len(frames)) + _frames(say.audio)
                end_of_file = len(frames) * FRAME_S
            if chunk < len(frames):
                frame = frames[chunk].ljust(FRAME_BYTES, bytes([ULAW_SILENCE]))
            else:
                idle_since = max(
                    end_of_file, self.play_until, self.r.frames[-1][0] if self.r.frames else 0
                )
                waiting = len(self.r.turns) < min_turns or bool(cues) or self.ended is not None
                tail = max(tail_s, TAIL_WALL_MIN_S * self.speed)
                longest = max(max_tail_s, MAX_TAIL_WALL_MIN_S * self.speed)
                if (at >= idle_since + tail and not waiting) or at >= end_of_file + longest:
                    return
                frame = silence
            await self.sleep_until(at + FRAME_S)  # a frame leaves once its 20 ms were captured
            await self.echo_marks(at + FRAME_S)
            if self.echo is not None:
                frame = self.with_echo(frame, at)
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

    def with_echo(self, frame: bytes, at: float) -> bytes:
        """The caller's frame captured at ``at`` with the echo of what played ``delay_ms``
        before it (through the echo's path), and line noise."""
        echo = self.echo
        assert echo is not None and self._noise is not None
        mixed = np.frombuffer(ulaw_decode(frame), dtype="<i2").astype(np.float64)
        n = len(mixed)
        taps = max(1, len(echo.path))
        # what played from (taps - 1) samples before the echo's window to its end
        played = self.played_between(at - echo.delay_ms / 1000 - (taps - 1) / 8000, n + taps - 1)
        if echo.clip_dbfs is not None:
            level = 32768 * 10 ** (echo.clip_dbfs / 20)
            played = level * np.tanh(played / level)
        if echo.path:
            played = np.convolve(played, np.asarray(echo.path), mode="valid")
        mixed += 10 ** (echo.gain_db / 20) * played
        if echo.noise_dbfs is not None:
            mixed += self._noise.normal(0.0, 32768 * 10 ** (echo.noise_dbfs / 20), n)
        return ulaw_encode(np.clip(np.rint(mixed), -32768, 32767).astype("<i2").tobytes())

    def played_between(self, t0: float, n: int) -> np.ndarray:
        """The ``n`` samples (float) of agent audio that played from call time ``t0`` on;
        zeros where nothing played."""
        out = np.zeros(n)
        for start, end, played in reversed(self.queue):
            if end <= t0 - 1.0:
                break
            if end <= t0 or start >= t0 + n / 8000:
                continue
            offset = round((t0 - start) * 8000)  # the played frame's sample at out[0]
            samples = np.frombuffer(ulaw_decode(played), dtype="<i2")
            lo, hi = max(0, -offset), min(n, len(samples) - offset)
            if hi > lo:
                out[lo:hi] += samples[offset + lo : offset + hi]
        return out

    def played_frames(self) -> list[tuple[float, bytes]]:
        now = self.now()
        return [(s, f) for s, e, f in self.queue if s < now]


def _frames(audio: bytes) -> list[bytes]:
    return [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]


def _latency(at: float, speech: list[tuple[float, float]]) -> float | None:
    ends = [end for _, end in speech if end <= at]
    return round(at - ends[-1], 3) if ends else None
