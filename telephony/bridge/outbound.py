"""Model audio to the caller: transcoding, 20 ms framing, marks, and the barge-in ``clear``.

Each model audio delta (pcm16 24 kHz) becomes one μ-law 8 kHz ``media`` message of whole
20 ms frames (a multiple of 160 bytes, at most ``MAX_FRAMES_PER_MESSAGE``; what does not fill a
frame waits for the next delta, and the item's last frame is padded with silence), followed by
one ``mark``. Twilio echoes a mark once the audio before it has played (or at once
when a ``clear`` dropped it); the echoes feed :class:`~.playback.Playback` and the session's
:class:`~.tracker.PhonePlaybackTracker`, which the SDK reads to truncate the agent's item at
the caller's ear when the caller barges in.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..audio import FRAME_BYTES, Framer, ModelToCaller, ulaw_decode
from ..audio.echo import PlayoutReference
from ..observability.call_metrics import CallMetrics
from ..twilio.media_stream import MediaMessages, clear_message, mark_message
from .playback import Playback
from .tracker import PACKET_MS, PhonePlaybackTracker

__all__ = ["OutboundAudio"]

ULAW_BYTES_PER_MS = 8
MAX_FRAMES_PER_MESSAGE = 50  # 1 s of audio in one media message at most
PCM16_24K_BYTES_PER_MS = 48
RESUME_MARK_FRAMES = 5  # after a pause, audio sent again carries a mark every 100 ms


class OutboundAudio:
    """One call's outbound audio.

    Args:
        send: sends one text frame to Twilio (raises when the socket is gone).
        record: writes a call-log record, ``record(event, **fields)``.
        metrics: the call's metrics (model-to-wire, turn latency, barge-in reaction).
        on_first_frame: called once, with ``time.monotonic()``, when the first frame goes out.
        clock: the clock :attr:`reference` places the far end's playout on (seconds): the
            caller's audio clock, so that mark echoes, read in order with the caller's frames,
            place it exactly however late they are read; ``time.monotonic`` by default.
    """

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        record: Callable[..., Any],
        metrics: CallMetrics,
        on_first_frame: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._clock = clock
        self._record = record
        self._metrics = metrics
        self._on_first_frame: Callable[[float], None] | None = on_first_frame
        self._stream_sid: str | None = None
        self._media: MediaMessages | None = None
        self.playback = Playback()
        self.tracker = PhonePlaybackTracker()
        self.generation = 0  # which model session the audio now comes from
        self._down = ModelToCaller()
        self._framer = Framer()
        self._interrupted_items: set[str] = set()
        self._out_item: tuple[str, int] | None = None  # item whose audio the framer holds
        self._item_key: tuple[str, int] | None = None  # item whose frames _item_frames holds
        self.frames_out = 0
        self.model_audio_bytes = 0
        self.clears = 0
        self.interruptions = 0
        self.reference: PlayoutReference | None = None  # set when echo cancelling is on
        self._mark_samples: dict[str, int] = {}  # mark -> reference samples before it
        self._item_frames: list[bytes] = []  # the current item's frames, for a resume
        self._paused_at: int | None = None  # frame of the current item a pause stopped at
        self._paused_since = 0.0
        self.pauses = 0
        self.resumes = 0

    @property
    def stream_sid(self) -> str | None:
        """The Twilio StreamSid audio goes to (None until ``start``)."""
        return self._stream_sid

    @stream_sid.setter
    def stream_sid(self, stream_sid: str | None) -> None:
        self._stream_sid = stream_sid
        self._media = MediaMessages(stream_sid) if stream_sid is not None else None

    def new_session(self, tracker: PhonePlaybackTracker) -> None:
        """A model session takes over the call: ``tracker`` (the one it was opened with) hears
        of the audio played from now on; marks of the old session's audio reach no tracker."""
        self.tracker = tracker
        self.generation += 1

    @property
    def idle(self) -> bool:
        """Everything sent has played and nothing is held back for the current item."""
        return self.playback.unplayed_ms == 0 and self._out_item is None and not self.paused

    @property
    def playing(self) -> bool:
        """Audio sent to Twilio has not all played yet."""
        return self.playback.unplayed_ms > 0

    @property
    def current_item(self) -> str | None:
        """The item whose audio went out last (playing, paused or done)."""
        return self._item_key[0] if self._item_key is not None else None

    @property
    def paused(self) -> bool:
        """A pause stopped the agent's audio; the rest waits for :meth:`resume`."""
        return self._paused_at is not None

    async def on_session_event(self, event: Any) -> None:
        """The audio events of a ``RealtimeSession`` (others are ignored here)."""
        kind = event.type
        if kind == "audio":
            await self.on_model_audio(event.audio)
        elif kind == "audio_end":
            self._record("model.audio_done", item_id=event.item_id)
            await self.flush()
        elif kind == "audio_interrupted":
            await self.on_interrupted(event.item_id)

    async def on_model_audio(self, audio: Any) -> None:
        """One model audio delta (``audio.data``: pcm16 24 kHz bytes) to the caller."""
        item_id, content_index = audio.item_id, audio.content_index
        data: bytes = audio.data
        self.model_audio_bytes += len(data)
        self._record(
            "model.audio",
            bytes=len(data),
            item_id=item_id,
            response_id=audio.response_id,
            content_index=content_index,
        )
        if item_id in self._interrupted_items:
            self._record("model.audio_dropped", item_id=item_id, bytes=len(data))
            return
        self._metrics.model_delta(item_id, time.monotonic())
        if self._out_item is not None and self._out_item != (item_id, content_index):
            await self.flush()  # a new item starts: finish the previous one first
        if self._out_item is None and self._item_key != (item_id, content_index):
            if self.paused:  # the paused item is over: the next one plays
                await self.resume()
            self._item_frames = []
            self._item_key = (item_id, content_index)
        self._out_item = (item_id, content_index)
        t0 = time.perf_counter()
        frames = self._framer.push(self._down.feed(data))
        self._metrics.outbound_processing(time.perf_counter() - t0, len(frames))
        await self._send_frames(frames)

    async def flush(self) -> None:
        """End of an item's audio: send the transcoder's tail and the padded last frame."""
        if self._out_item is None:
            return
        await self._send_frames(self._framer.push(self._down.flush()) + self._framer.flush())
        self._out_item = None

    async def _send_frames(self, frames: list[bytes]) -> None:
        if not frames or self._out_item is None or self.stream_sid is None:
            return
        self._item_frames.extend(frames)
        if self.paused:  # kept for the resume
            return
        await self._emit(frames, self._out_item)

    async def _emit(self, frames: list[bytes], key: tuple[str, int]) -> None:
        """Frames of item ``key`` to Twilio, then their mark."""
        now = time.monotonic()
        if self._on_first_frame is not None:
            self._on_first_frame(now)
            self._on_first_frame = None
        item_id, content_index = key
        latencies = self._metrics.frame_sent(item_id, now)
        if latencies:
            self._record("latency", item_id=item_id, **latencies)
        assert self._media is not None and self.stream_sid is not None
        for i in range(0, len(frames), MAX_FRAMES_PER_MESSAGE):
            await self._send(self._media.media(b"".join(frames[i : i + MAX_FRAMES_PER_MESSAGE])))
        self.frames_out += len(frames)
        ms = sum(len(f) for f in frames) / ULAW_BYTES_PER_MS
        mark = self.playback.sent(item_id, content_index, ms, self.generation)
        self.tracker.on_sent_ms(item_id, content_index, ms)
        if self.reference is not None:
            pcm = ulaw_decode(b"".join(frames))
            self._mark_samples[mark.name] = self.reference.play(pcm, self._clock())
        await self._send(mark_message(self.stream_sid, mark.name))
        self._record("mark.sent", name=mark.name, item_id=item_id, ms=ms, frames=len(frames))

    async def play_clip(self, ulaw: bytes, name: str, wait_s: float = 2.0) -> bool:
        """Play a recorded clip (μ-law 8 kHz, whole 20 ms frames) to the caller as item
        ``name``, with its marks, and wait until Twilio says all of it played (at most its
        length plus ``wait_s``). True when it did."""
        frames = [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
        if self._media is None or not frames:
            return False
        for i in range(0, len(frames), MAX_FRAMES_PER_MESSAGE):
            await self._emit(frames[i : i + MAX_FRAMES_PER_MESSAGE], (name, 0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(len(ulaw) / 8000 + wait_s):
                while self.playback.unplayed_ms > 0:  # noqa: ASYNC110 (the echoes set it)
                    await asyncio.sleep(0.02)
        return self.playback.unplayed_ms == 0

    async def send_untracked(self, ulaw: bytes) -> None:
        """μ-law audio that is not the agent's (the hold sound): one ``media`` message, no
        mark, no playback position."""
        if self._media is not None:
            await self._send(self._media.media(ulaw))

    async def on_interrupted(self, item_id: str) -> None:
        """Barge-in: Twilio drops its buffer (``clear``); we drop what we hold for the item
        (after a pause, Twilio's buffer is empty already and what the pause kept goes)."""
        self.interruptions += 1
        self._interrupted_items.add(item_id)
        self._down.reset()
        self._framer.reset()
        self._out_item = None
        self._item_frames = []
        self._item_key = None
        if self.paused:
            self._paused_at = None
            self._record("playback.dropped", item_id=item_id)
            return
        await self._clear(item_id)

    async def _clear(self, item_id: str | None, speech_start: float | None = None) -> None:
        now = time.monotonic()
        playing = self.playback.unplayed_ms > 0
        dropped_ms = self.playback.cleared()
        if self.reference is not None:
            self.reference.stop(self._clock())
            self._mark_samples.clear()
        self.clears += 1
        reaction_ms = self._metrics.clear_sent(now, playing, speech_start)
        self._record(  # first: its ts is when the clear was decided and left
            "clear.sent",
            item_id=item_id,
            playing=playing,
            dropped_ms=round(dropped_ms, 1),
            barge_in_ms=reaction_ms,
            paused=self.paused,
        )
        if self.stream_sid is not None:
            await self._send(clear_message(self.stream_sid))

    async def pause(self, speech_start: float | None = None, caller_ms: int | None = None) -> bool:
        """Stop the agent's audio where the caller is now hearing it (``clear``) and keep the
        rest of the item, and what the model still sends of it, for :meth:`resume`. False
        when nothing was playing. ``speech_start`` (``time.monotonic()``): when the caller
        began speaking, for the barge-in reaction figure; ``caller_ms``: where on the caller's
        audio clock the pause was decided (ms of caller audio), logged."""
        if self.paused or not self.playing or self._item_key is None:
            return False
        # the wall time first, then the position: a packet that begins between the two reads
        # began after ``heard_ts`` (read the other way round, a stall between them let a CI run
        # count a packet as begun by ``heard_ts`` that the position had not reached)
        read_ts = round(time.time(), 6)
        state = self.tracker.get_state()
        item_id = self._item_key[0]
        heard_ms = 0.0
        if state["current_item_id"] == item_id and state["elapsed_ms"] is not None:
            heard_ms = float(state["elapsed_ms"])
        self._paused_at = min(math.ceil(heard_ms / PACKET_MS), len(self._item_frames))
        self._paused_since = time.monotonic()
        self.pauses += 1
        await self._clear(item_id, speech_start)
        self.tracker.freeze(self._paused_at * PACKET_MS)
        self._record(
            "playback.paused",
            item_id=item_id,
            heard_ms=self._paused_at * PACKET_MS,
            kept_ms=(len(self._item_frames) - self._paused_at) * PACKET_MS,
            caller_ms=caller_ms,
            heard_ts=read_ts,
        )
        return True

    async def resume(self, caller_ms: int | None = None) -> None:
        """Play on from where :meth:`pause` stopped: nothing skipped, nothing repeated.
        ``caller_ms``: where on the caller's audio clock it was decided, logged (None: the
        paused item ended and the next one plays)."""
        if self._paused_at is None or self._item_key is None:
            self._paused_at = None
            return
        start, self._paused_at = self._paused_at, None
        frames = self._item_frames[start:]
        self.resumes += 1
        gap_ms = round((time.monotonic() - self._paused_since) * 1000, 1)
        self._record(
            "playback.resumed",
            item_id=self._item_key[0],
            from_ms=start * PACKET_MS,
            ms=len(frames) * PACKET_MS,
            gap_ms=gap_ms,
            caller_ms=caller_ms,
        )
        # the first packet alone with its mark: its echo tells when playback began again
        # (the tracker holds the position until then), then a mark every RESUME_MARK_FRAMES
        batches = [frames[:1]] + [
            frames[i : i + RESUME_MARK_FRAMES] for i in range(1, len(frames), RESUME_MARK_FRAMES)
        ]
        for batch in batches:
            if batch:
                await self._emit(batch, self._item_key)

    def on_mark_echo(self, name: str) -> None:
        """Twilio echoed mark ``name``: its audio played (or a ``clear`` dropped it)."""
        played, known = self.playback.echoed(name)
        if not known:
            self._record("protocol.error", error=f"echo of unknown mark {name[:40]!r}")
            return
        if not played:
            self._record("mark.cleared", name=name)
            return
        for mark in played:
            if mark.generation == self.generation:  # not audio of a session since replaced
                self.tracker.on_play_ms(mark.item_id, mark.content_index, mark.ms)
            if self.reference is not None and mark.name in self._mark_samples:
                self.reference.played_until(self._mark_samples.pop(mark.name), self._clock())
            self._record("mark.played", name=mark.name, item_id=mark.item_id, ms=mark.ms)

    def totals(self) -> dict[str, Any]:
        """Outbound figures for ``call.end``."""
        playback = self.playback
        return {
            "frames_out": self.frames_out,
            "audio_out_s": round(self.frames_out * 0.02, 3),
            "model_audio_s": round(self.model_audio_bytes / PCM16_24K_BYTES_PER_MS / 1000, 3),
            "marks_sent": playback.marks_sent,
            "marks_played": playback.marks_played,
            "marks_cleared": playback.marks_cleared,
            "played_ms": round(playback.played_ms, 1),
            "dropped_ms": round(playback.dropped_ms, 1),
            "clears": self.clears,
            "interruptions": self.interruptions,
            "pauses": self.pauses,
            "resumes": self.resumes,
        }
