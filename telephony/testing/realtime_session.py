"""One connection of the loopback Realtime server: the session's events, its energy VAD (in
audio time) and its responses. See :mod:`.realtime_server`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection

from ..audio import ulaw_decode, ulaw_encode

if TYPE_CHECKING:
    from .realtime_server import LoopbackRealtimeServer

__all__ = [
    "BYTES_PER_MS",
    "RATE",
    "LoopbackSession",
    "RealtimeConnection",
    "pcm24_from_ulaw",
    "tone",
    "ulaw_from_pcm24",
]

RATE = 24000
BYTES_PER_MS = 48


def ulaw_from_pcm24(pcm24: bytes) -> bytes:
    """pcm16 24 kHz (even length) as μ-law 8 kHz: every third sample, no filter (a stand-in
    model's voice, not the bridge's transcoder)."""
    return ulaw_encode(np.frombuffer(pcm24, "<i2")[::3].tobytes())


def pcm24_from_ulaw(ulaw: bytes) -> bytes:
    """μ-law 8 kHz as pcm16 24 kHz: each sample three times (for the stand-in's energy VAD)."""
    return np.repeat(np.frombuffer(ulaw_decode(ulaw), "<i2"), 3).tobytes()


def tone(freq_hz: float, ms: float, amplitude: float = 8000.0, fade_ms: float = 5.0) -> bytes:
    """A sine tone as pcm16 24 kHz little-endian mono, with short linear fades (no clicks)."""
    n = int(RATE * ms / 1000)
    t = np.arange(n) / RATE
    y = amplitude * np.sin(2 * np.pi * freq_hz * t)
    fade = min(int(RATE * fade_ms / 1000), n // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        y[:fade] *= ramp
        y[n - fade :] *= ramp[::-1]
    return np.rint(y).astype("<i2").tobytes()


@dataclass
class RealtimeConnection:
    """What one client did on one connection (for assertions)."""

    path: str
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)  # unless the server's keep_audio=False
    audio_bytes: int = 0  # received, kept or not
    truncations: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    speech_started_ms: list[int] = field(default_factory=list)
    speech_stopped_ms: list[int] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    drop_code: int | None = None  # close with this code after drop_after_ms of audio
    fail_mode: str | None = None  # misbehave when the first reply is due (see fail_rule)
    expired: bool = False  # the session cap ended it
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # conversation.item.delete item ids
    usage: list[dict[str, Any]] = field(default_factory=list)  # each response.done's usage
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    # (event type, Unix time) of the session.*, error, output_audio_buffer.* and response.done
    # events sent
    sent: list[tuple[str, float]] = field(default_factory=list)

    @property
    def audio_ms(self) -> float:
        return self.audio_bytes / BYTES_PER_MS

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]

    def sent_at(self, event_type: str) -> list[float]:
        """When the server sent each ``event_type`` event (Unix seconds)."""
        return [at for kind, at in self.sent if kind == event_type]


class LoopbackSession:
    """One connection's Realtime session: events in, VAD, responses out."""

    def __init__(
        self, server: LoopbackRealtimeServer, ws: ServerConnection, conn: RealtimeConnection, n: int
    ):
        self.n = n  # ids are unique across connections: item_<n>_<k>
        self.s = server
        self.ws = ws
        self.conn = conn
        self.ids = itertools.count(1)
        self.turn = 0
        self.response_task: asyncio.Task[None] | None = None
        self.done_sent = False  # the current response's response.done went out
        self.closing: asyncio.Task[None] | None = None
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_loopback",
            "model": "loopback",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "turn_detection": {"type": "server_vad", "interrupt_response": True},
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin"},
            },
        }
        # VAD state, in samples of received audio
        self.vad_pos = 0
        self.speaking = False
        self.run_ms = 0  # consecutive speech (or silence while speaking) in ms
        self.speech_item: str | None = None
        self.pending = bytearray()
        self.dead = False  # misbehaving: sends nothing more
        self.tasks: set[asyncio.Task[None]] = set()
        self.playing = False  # the output audio buffer is playing (playout_delay_s)
        self.playout: asyncio.Task[None] | None = None  # its stopped, pending
        self.billed_audio_bytes = 0  # caller audio some response's usage has counted
        self.cached = {"text_tokens": 0, "audio_tokens": 0}  # the previous response's input

    def nid(self, prefix: str) -> str:
        return f"{prefix}_{self.n}_{next(self.ids)}"

    async def send(self, event: dict[str, Any]) -> None:
        if self.dead:
            return
        event.setdefault("event_id", self.nid("event"))
        await self.ws.send(json.dumps(event))
        if event["type"].startswith(("output_audio_buffer.", "error", "session.", "response.done")):
            self.conn.sent.append((event["type"], time.time()))

    def later(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def expire_after(self, seconds: float) -> None:
        """OpenAI at the session cap: an ``error`` (``session_expired``), then close 1001."""
        await asyncio.sleep(seconds)
        self.conn.expired = True
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "session_expired",
                    "message": "Your session hit the maximum duration.",
                },
            }
        )
        await self.ws.close(1001, "session expired")

    def misbehave(self, mode: str) -> None:
        """Stop answering: ``close_frame_only`` sends a close frame and keeps TCP open;
        ``silent`` just stops (no data, no pongs). Either way nothing is read any more."""
        self.dead = True
        self.s.misbehaving.add(self.ws)
        if mode == "close_frame_only":
            self.ws.transport.write(b"\x88\x02" + (1001).to_bytes(2, "big"))
        self.ws.transport.pause_reading()

    async def run(self) -> None:
        cap = self.s.session_cap_s
        if cap is not None:
            if self.s.announce_expiry:
                self.session["expires_at"] = int(time.time() + cap)
            self.later(self.expire_after(cap))
        await self.send({"type": "session.created", "session": self.session})
        try:
            async for message in self.ws:
                event = json.loads(message)
                await self.on_client_event(event)
        except Exception:
            pass
        finally:
            for task in [self.response_task, *self.tasks]:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    async def on_client_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            chunk = base64.b64decode(event.get("audio", ""))
            if self.pcmu("input"):  # G.711 μ-law 8 kHz (a pass-through bridge): as pcm16 24 kHz
                chunk = pcm24_from_ulaw(chunk)
            self.conn.audio_bytes += len(chunk)
            if self.s.keep_audio:
                self.conn.audio += chunk
            if self.conn.drop_code is not None and self.conn.audio_ms >= self.s.drop_after_ms:
                code, self.conn.drop_code = self.conn.drop_code, None
                # close from another task: this loop must keep reading, or the client's close
                # frame waits behind queued audio until the close timeout
                self.closing = asyncio.create_task(self.ws.close(code, "loopback drop rule"))
                return
            await self.vad(chunk)
            return
        self.conn.events.append(event)
        if kind == "session.update":
            session = dict(event.get("session") or {})
            session["type"] = "realtime"
            self.session.update(session)
            await self.send({"type": "session.updated", "session": self.session})
        elif kind == "conversation.item.truncate":
            self.conn.truncations.append(event)
            await self.send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": event.get("item_id", ""),
                    "content_index": event.get("content_index", 0),
                    "audio_end_ms": event.get("audio_end_ms", 0),
                }
            )
        elif kind == "response.create":
            self.start_response()
        elif kind == "response.cancel":
            await self.cancel_response()
        elif kind == "conversation.item.delete":
            self.conn.deleted.append(str(event.get("item_id", "")))
            await self.send({"type": "conversation.item.deleted", "item_id": event.get("item_id")})
        elif kind == "conversation.item.create":
            item = dict(event.get("item") or {})
            if item.get("type") == "function_call_output":
                self.conn.tool_outputs.append(item)
                item.setdefault("id", self.nid("item"))
                await self.send({"type": "conversation.item.added", "item": item})
                return
            item.setdefault("id", self.nid("item"))
            item.setdefault("status", "completed")
            await self.send({"type": "conversation.item.added", "item": item})

    async def vad(self, chunk: bytes) -> None:
        self.pending += chunk
        frame = 20 * BYTES_PER_MS
        while len(self.pending) >= frame:
            block = np.frombuffer(bytes(self.pending[:frame]), dtype="<i2").astype(np.float64)
            del self.pending[:frame]
            self.vad_pos += len(block)
            now_ms = self.vad_pos * 1000 // RATE
            loud = math.sqrt(float(np.mean(block**2))) > self.s.speech_threshold
            if not self.speaking:
                self.run_ms = self.run_ms + 20 if loud else 0
                if self.run_ms >= self.s.speech_start_ms:
                    self.speaking = True
                    self.run_ms = 0
                    await self.speech_started(now_ms - self.s.speech_start_ms)
            else:
                self.run_ms = 0 if loud else self.run_ms + 20
                if self.run_ms >= self.s.silence_ms:
                    self.speaking = False
                    self.run_ms = 0
                    await self.speech_stopped(now_ms - self.s.silence_ms)

    async def speech_started(self, at_ms: int) -> None:
        self.speech_item = self.nid("item")
        self.conn.speech_started_ms.append(at_ms)
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": at_ms,
                "item_id": self.speech_item,
            }
        )
        if self.detection().get("interrupt_response", True):
            await self.cancel_response()  # barge-in cancels the reply

    async def speech_stopped(self, at_ms: int) -> None:
        if self.conn.fail_mode is not None:
            mode, self.conn.fail_mode = self.conn.fail_mode, None
            self.misbehave(mode)
            return
        item_id = self.speech_item or self.nid("item")
        self.conn.speech_stopped_ms.append(at_ms)
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": item_id}
        )
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id})
        utterance = len(self.conn.speech_stopped_ms) - 1
        if self.s.recognise is not None:
            started = self.conn.speech_started_ms[-1] if self.conn.speech_started_ms else 0
            padding = self.detection().get("prefix_padding_ms", 300)
            started = max(0, started - (padding if isinstance(padding, int) else 300))
            audio = bytes(self.conn.audio[started * BYTES_PER_MS : at_ms * BYTES_PER_MS])
            self.later(self.recognised(item_id, audio))
        else:
            transcript = (
                self.s.heard(utterance)
                if self.s.heard is not None
                else self.s.transcript(self.turn)
            )
            transcribed = _transcribed(item_id, transcript)
            if self.s.transcript_delay_s:
                self.later(self.send_later(self.s.transcript_delay_s, transcribed))
            else:
                await self.send(transcribed)
        if self.detection().get("create_response", True):
            self.start_response()

    async def recognised(self, item_id: str, audio: bytes) -> None:
        """The item's transcript from the recogniser (in a thread), no sooner than
        ``transcript_delay_s`` after the end of speech."""
        assert self.s.recognise is not None
        t0 = time.monotonic()
        transcript = await asyncio.to_thread(self.s.recognise, audio)
        await asyncio.sleep(max(0.0, self.s.transcript_delay_s - (time.monotonic() - t0)))
        await self.send(_transcribed(item_id, transcript))

    def pcmu(self, direction: str) -> bool:
        """Whether the session's ``audio.<direction>.format`` is ``audio/pcmu`` (G.711 μ-law,
        8 kHz: the SDK's ``g711_ulaw``)."""
        audio = ((self.session.get("audio") or {}).get(direction)) or {}
        return (audio.get("format") or {}).get("type") == "audio/pcmu"

    def detection(self) -> dict[str, Any]:
        """The session's ``audio.input.turn_detection`` as the client last set it."""
        return ((self.session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}

    async def send_later(self, seconds: float, event: dict[str, Any]) -> None:
        await asyncio.sleep(seconds)
        await self.send(event)

    def start_response(self) -> None:
        # a response is active until its response.done is sent (as OpenAI's: a
        # response.create right after response.done, as the SDK sends after a tool, starts one)
        if self.response_task is not None and not self.response_task.done() and not self.done_sent:
            return
        self.done_sent = False
        turn = self.turn
        self.turn += 1
        self.response_task = asyncio.create_task(self.respond(turn))

    async def cancel_response(self) -> None:
        task = self.response_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def function_call(self, response_id: str, name: str, arguments: dict[str, Any]) -> None:
        item = {
            "id": self.nid("item"),
            "type": "function_call",
            "call_id": self.nid("call"),
            "name": name,
            "arguments": json.dumps(arguments),
            "status": "in_progress",
        }
        self.conn.tool_calls.append(item)
        base = {"response_id": response_id, "output_index": 1}
        await self.send({**base, "type": "response.output_item.added", "item": item})
        await self.send(
            {**base, "type": "response.output_item.done", "item": {**item, "status": "completed"}}
        )

    async def respond(self, turn: int) -> None:
        """One response: created, its item, an optional function call, the audio deltas with a
        transcript, then done (``cancelled`` when a barge-in or ``response.cancel`` cut it)."""
        response_id = self.nid("resp")
        item_id = self.nid("item")
        text = self.s.reply_text(turn)
        record: dict[str, Any] = {"response_id": response_id, "item_id": item_id, "audio_ms": 0.0}
        self.conn.responses.append(record)
        status = "completed"
        await self.send({"type": "response.created", "response": _response(response_id, [])})
        try:
            item = _message(item_id, "in_progress", [])
            await self.send(
                {
                    "type": "response.output_item.added",
                    "response_id": response_id,
                    "output_index": 0,
                    "item": item,
                }
            )
            if self.s.tool_call_in is not None:
                call = self.s.tool_call_in(str(self.session.get("instructions") or ""), turn)
            else:
                call = self.s.tool_call(turn)
            if call is not None:
                await self.function_call(response_id, *call)
            if self.s.first_delta_delay_s:
                await asyncio.sleep(self.s.first_delta_delay_s)
            await self.stream_audio(response_id, item_id, self.s.reply(turn), text, record)
        except asyncio.CancelledError:
            status = "cancelled"
        record["status"] = status
        content = [{"type": "output_audio", "transcript": text}]
        item = _message(item_id, "completed" if status == "completed" else "incomplete", content)
        done = {"type": "response.output_item.done", "response_id": response_id, "output_index": 0}
        with contextlib.suppress(Exception):
            await self.send({**done, "item": item})
            done_response = _response(response_id, [item], status)
            done_response["usage"] = self.usage(record["audio_ms"], text)
            self.done_sent = True
            await self.send({"type": "response.done", "response": done_response})
        if self.s.playout_delay_s is not None and record["audio_ms"]:
            self.playout = self.later(self.played_out(response_id))

    def usage(self, reply_ms: float, text: str) -> dict[str, Any]:
        """``response.usage`` as OpenAI reports it, at OpenAI's rates: audio in at 10 tokens a
        second of caller audio since the last response, audio out at 20 a second; text in
        300 tokens of instructions, growing 50 and the reply's text each turn; the previous
        response's whole input counted again as cached (the conversation prefix); the
        reply's transcript as text output (a token per 4 characters)."""
        heard_s = (self.conn.audio_bytes - self.billed_audio_bytes) / BYTES_PER_MS / 1000
        self.billed_audio_bytes = self.conn.audio_bytes
        audio_in = round(heard_s * 10) + self.cached["audio_tokens"]
        text_in = (self.cached["text_tokens"] or 250) + 50 + len(text) // 4
        cached = dict(self.cached)
        self.cached = {"text_tokens": text_in, "audio_tokens": audio_in}
        text_out, audio_out = max(1, len(text) // 4), round(reply_ms / 1000 * 20)
        self.conn.usage.append({"input": (text_in, audio_in), "output": (text_out, audio_out)})
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "cached_tokens": cached["text_tokens"] + cached["audio_tokens"],
                "cached_tokens_details": cached,
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    async def played_out(self, response_id: str) -> None:
        """The output audio buffer ran empty at the caller ``playout_delay_s`` after the last
        response's ``response.done`` (SIP and WebRTC sessions only): ``stopped`` names the
        response whose audio played last."""
        assert self.s.playout_delay_s is not None
        await asyncio.sleep(self.s.playout_delay_s)
        self.playing = False
        await self.send({"type": "output_audio_buffer.stopped", "response_id": response_id})

    async def playout_starts(self, response_id: str) -> None:
        """A response's first audio: the buffer keeps playing (its ``stopped`` is put off), or
        starts (``output_audio_buffer.started``)."""
        if self.playout is not None:
            self.playout.cancel()
            self.playout = None
        if not self.playing:
            self.playing = True
            await self.send({"type": "output_audio_buffer.started", "response_id": response_id})

    async def stream_audio(
        self, response_id: str, item_id: str, audio: bytes, text: str, record: dict[str, Any]
    ) -> None:
        """The reply's audio deltas (``chunk_ms`` each), its transcript, and their ``done``s."""
        base = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        step = self.s.chunk_ms * BYTES_PER_MS
        for i in range(0, len(audio), step):
            chunk = audio[i : i + step]
            wire = chunk
            if self.pcmu("output"):  # every third sample of the 24 kHz reply, μ-law encoded
                wire = ulaw_from_pcm24(chunk)
            await self.send(
                {
                    **base,
                    "type": "response.output_audio.delta",
                    "content_index": 0,
                    "delta": base64.b64encode(wire).decode("ascii"),
                }
            )
            record["audio_ms"] += len(chunk) / BYTES_PER_MS
            if i == 0:
                transcript = {"type": "response.output_audio_transcript.delta", "delta": text}
                await self.send({**base, **transcript, "content_index": 0})
                if self.s.playout_delay_s is not None:
                    await self.playout_starts(response_id)
            await asyncio.sleep(self.s.delta_interval_s)
        await self.send({**base, "type": "response.output_audio.done", "content_index": 0})
        done = {"type": "response.output_audio_transcript.done", "transcript": text}
        await self.send({**base, **done, "content_index": 0})


def _transcribed(item_id: str, transcript: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        # as gpt-4o-mini-transcribe reports it (OpenAI's Realtime reference)
        "usage": {
            "type": "tokens",
            "total_tokens": 27,
            "input_tokens": 20,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 20},
            "output_tokens": 7,
        },
    }


def _response(response_id: str, output: list[Any], status: str = "in_progress") -> dict[str, Any]:
    return {"id": response_id, "object": "realtime.response", "status": status, "output": output}


def _message(item_id: str, status: str, content: list[Any]) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }
