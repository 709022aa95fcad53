"""A loopback server that speaks the OpenAI Realtime WebSocket protocol (GA event names).

For tests and benchmarks: point ``OPENAI_REALTIME_URL`` (the SDK's ``model_config["url"]``) at
:attr:`LoopbackRealtimeServer.url` and the SDK's own ``OpenAIRealtimeWebSocketModel`` runs
unmodified against it. It never touches the network beyond 127.0.0.1.

What it does per connection:

- sends ``session.created``; answers ``session.update`` with ``session.updated``;
- keeps every ``input_audio_buffer.append`` (pcm16 24 kHz) for assertions;
- runs an energy VAD on that audio (in audio time, not wall time): ``speech_started`` after
  ``speech_start_ms`` of speech, ``speech_stopped`` after ``silence_ms`` of silence, then
  ``committed``, a transcription and a response;
- a response streams the reply audio (``reply(turn) -> pcm16 24 kHz``) as
  ``response.output_audio.delta`` chunks, with transcript, item and ``response.done`` events;
- ``speech_started`` during a response cancels it (``interrupt_response``);
- ``conversation.item.truncate`` is recorded and answered with ``conversation.item.truncated``;
- ``response.create`` starts a response; ``response.cancel`` cancels one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

__all__ = ["LoopbackRealtimeServer", "RealtimeConnection", "tone"]

RATE = 24000
BYTES_PER_MS = 48


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
    audio: bytearray = field(default_factory=bytearray)
    truncations: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    speech_started_ms: list[int] = field(default_factory=list)
    speech_stopped_ms: list[int] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    drop_code: int | None = None  # close with this code after drop_after_ms of audio
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def audio_ms(self) -> float:
        return len(self.audio) / BYTES_PER_MS

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]


class LoopbackRealtimeServer:
    """Serve the Realtime protocol on 127.0.0.1. Use ``async with``; read :attr:`url`.

    Args:
        reply: pcm16 24 kHz reply audio for turn ``n`` (0-based); default: a 600 Hz tone, 1 s.
        chunk_ms: audio per ``response.output_audio.delta``.
        delta_interval_s: wall-clock pause between deltas (0: as fast as the socket takes them).
        first_delta_delay_s: wall-clock pause between ``response.created`` and the first delta.
        speech_threshold: RMS (int16 units) above which a 20 ms chunk is speech.
        speech_start_ms / silence_ms: VAD hangover for start and end of speech, in audio time.
        transcript: the caller transcript reported for turn ``n``.
        tool_call: ``(name, arguments)`` of a function call turn ``n`` makes before its audio (the
            SDK runs the tool, sends its output and asks for the next response), or None.
    """

    def __init__(
        self,
        reply: Callable[[int], bytes] | None = None,
        *,
        chunk_ms: int = 100,
        delta_interval_s: float = 0.0,
        first_delta_delay_s: float = 0.0,
        speech_threshold: float = 300.0,
        speech_start_ms: int = 60,
        silence_ms: int = 500,
        transcript: Callable[[int], str] | None = None,
        reply_text: Callable[[int], str] | None = None,
        tool_call: Callable[[int], tuple[str, dict[str, Any]] | None] | None = None,
    ) -> None:
        self.reply = reply or (lambda _turn: tone(600.0, 1000.0))
        self.chunk_ms = chunk_ms
        self.delta_interval_s = delta_interval_s
        self.first_delta_delay_s = first_delta_delay_s
        self.speech_threshold = speech_threshold
        self.speech_start_ms = speech_start_ms
        self.silence_ms = silence_ms
        self.transcript = transcript or (lambda turn: f"caller turn {turn}")
        self.reply_text = reply_text or (lambda turn: f"loopback reply {turn}")
        self.tool_call = tool_call or (lambda _turn: None)
        self.connections: list[RealtimeConnection] = []
        self.reject_next: int = 0  # refuse this many upcoming handshakes with HTTP 503
        # drop_rule(n) -> close code (or None): connection n (0-based) closes itself with that
        # code once it has received drop_after_ms of audio
        self.drop_rule: Callable[[int], int | None] = lambda _n: None
        self.drop_after_ms = 600.0
        self._server: Any = None
        self._live: set[ServerConnection] = set()
        self.url = ""

    async def __aenter__(self) -> LoopbackRealtimeServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=8 * 1024 * 1024, process_request=self._gate
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime?model=loopback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _gate(self, connection: ServerConnection, request: Any) -> Any:
        if self.reject_next > 0:
            self.reject_next -= 1
            return connection.respond(503, "loopback refuses this connection\n")
        return None

    async def drop_all(self, code: int = 1011, reason: str = "loopback drop") -> None:
        """Close every live connection with ``code`` (1011: an unexpected server failure)."""
        for ws in list(self._live):
            with contextlib.suppress(Exception):
                await ws.close(code, reason)

    def abort_all(self) -> None:
        """Reset every live connection: the TCP transport is aborted, no close frame is sent."""
        for ws in list(self._live):
            ws.transport.abort()

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        conn = RealtimeConnection(
            path=request.path if request else "",
            headers=dict(request.headers) if request else {},
        )
        conn.drop_code = self.drop_rule(len(self.connections))
        self.connections.append(conn)
        self._live.add(ws)
        try:
            await _Session(self, ws, conn, len(self.connections)).run()
        finally:
            self._live.discard(ws)
            conn.closed.set()


class _Session:
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

    def nid(self, prefix: str) -> str:
        return f"{prefix}_{self.n}_{next(self.ids)}"

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.nid("event"))
        await self.ws.send(json.dumps(event))

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session})
        try:
            async for message in self.ws:
                event = json.loads(message)
                await self.on_client_event(event)
        except Exception:
            pass
        finally:
            if self.response_task is not None:
                self.response_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.response_task

    async def on_client_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            chunk = base64.b64decode(event.get("audio", ""))
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
        await self.cancel_response()  # interrupt_response: barge-in cancels the reply

    async def speech_stopped(self, at_ms: int) -> None:
        item_id = self.speech_item or self.nid("item")
        self.conn.speech_stopped_ms.append(at_ms)
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": item_id}
        )
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id})
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": self.s.transcript(self.turn),
                "usage": {"type": "duration", "seconds": 1.0},
            }
        )
        self.start_response()

    def start_response(self) -> None:
        if self.response_task is not None and not self.response_task.done():
            return
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
        response_id = self.nid("resp")
        item_id = self.nid("item")
        text = self.s.reply_text(turn)
        record: dict[str, Any] = {"response_id": response_id, "item_id": item_id, "audio_ms": 0.0}
        self.conn.responses.append(record)
        base = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        status = "completed"
        await self.send(
            {
                "type": "response.created",
                "response": {
                    "id": response_id,
                    "object": "realtime.response",
                    "status": "in_progress",
                    "output": [],
                },
            }
        )
        try:
            await self.send(
                {
                    "type": "response.output_item.added",
                    "response_id": response_id,
                    "output_index": 0,
                    "item": {
                        "id": item_id,
                        "type": "message",
                        "role": "assistant",
                        "status": "in_progress",
                        "content": [],
                    },
                }
            )
            call = self.s.tool_call(turn)
            if call is not None:
                await self.function_call(response_id, *call)
            if self.s.first_delta_delay_s:
                await asyncio.sleep(self.s.first_delta_delay_s)
            audio = self.s.reply(turn)
            step = self.s.chunk_ms * BYTES_PER_MS
            for i in range(0, len(audio), step):
                chunk = audio[i : i + step]
                await self.send(
                    {
                        **base,
                        "type": "response.output_audio.delta",
                        "content_index": 0,
                        "delta": base64.b64encode(chunk).decode("ascii"),
                    }
                )
                record["audio_ms"] += len(chunk) / BYTES_PER_MS
                if i == 0:
                    await self.send(
                        {
                            **base,
                            "type": "response.output_audio_transcript.delta",
                            "content_index": 0,
                            "delta": text,
                        }
                    )
                await asyncio.sleep(self.s.delta_interval_s)
            await self.send({**base, "type": "response.output_audio.done", "content_index": 0})
            await self.send(
                {
                    **base,
                    "type": "response.output_audio_transcript.done",
                    "content_index": 0,
                    "transcript": text,
                }
            )
        except asyncio.CancelledError:
            status = "cancelled"
        record["status"] = status
        item = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "completed" if status == "completed" else "incomplete",
            "content": [{"type": "output_audio", "transcript": text}],
        }
        with contextlib.suppress(Exception):
            await self.send(
                {
                    "type": "response.output_item.done",
                    "response_id": response_id,
                    "output_index": 0,
                    "item": item,
                }
            )
            await self.send(
                {
                    "type": "response.done",
                    "response": {
                        "id": response_id,
                        "object": "realtime.response",
                        "status": status,
                        "output": [item],
                    },
                }
            )
