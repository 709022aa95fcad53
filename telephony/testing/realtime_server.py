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
import contextlib
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from .realtime_session import LoopbackSession, RealtimeConnection, tone

__all__ = ["LoopbackRealtimeServer", "RealtimeConnection", "tone"]


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
        heard: the caller transcript of the ``n``-th speech the VAD found (0-based), when
            transcripts follow what was said rather than the turns; overrides ``transcript``.
        recognise: the caller transcript from a speech item's audio (pcm16 24 kHz bytes, in a
            thread): from the session's ``prefix_padding_ms`` (300 by default) before the
            speech began to its end, as the audio of OpenAI's items holds the prefix padding
            (a recogniser given a word cut at its first sound may hear nothing); overrides
            ``heard``.
        transcript_delay_s: the transcript follows ``committed`` this much later (OpenAI's
            come a few hundred ms after it).
        tool_call: ``(name, arguments)`` of a function call turn ``n`` makes before its audio (the
            SDK runs the tool, sends its output and asks for the next response), or None.
        tool_call_in: the same, chosen by the session's ``instructions`` and the turn (two
            agents on one server: a warm transfer's caller and briefing legs); overrides
            ``tool_call``.
        session_cap_s: each session ends after this many seconds as OpenAI's do at their cap:
            an ``error`` with code ``session_expired``, then a close with 1001.
        announce_expiry: ``session.created`` carries ``expires_at`` (OpenAI's does); False
            leaves the cap unannounced.
        playout_delay_s: as on SIP and WebRTC sessions, the output audio buffer: ``started``
            when a response's audio begins playing with none playing, ``stopped`` this long
            after the last response's ``response.done`` (its audio finished playing at the
            caller); None: neither.
        keep_audio: keep the caller audio each connection received (False: count it only, for
            hours-long benchmark calls).
        api_key: refuse a handshake without ``Authorization: Bearer <api_key>`` with HTTP 401
            and OpenAI's error body for a wrong key; None: any key.
        connect_delay_s: the WebSocket handshake is answered this long after the request, as
            a far-away service's (TCP, TLS and the upgrade) would be; 0: at once.
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
        heard: Callable[[int], str] | None = None,
        recognise: Callable[[bytes], str] | None = None,
        transcript_delay_s: float = 0.0,
        reply_text: Callable[[int], str] | None = None,
        tool_call: Callable[[int], tuple[str, dict[str, Any]] | None] | None = None,
        tool_call_in: Callable[[str, int], tuple[str, dict[str, Any]] | None] | None = None,
        session_cap_s: float | None = None,
        announce_expiry: bool = True,
        playout_delay_s: float | None = None,
        keep_audio: bool = True,
        api_key: str | None = None,
        connect_delay_s: float = 0.0,
    ) -> None:
        self.reply = reply or (lambda _turn: tone(600.0, 1000.0))
        self.chunk_ms = chunk_ms
        self.delta_interval_s = delta_interval_s
        self.first_delta_delay_s = first_delta_delay_s
        self.speech_threshold = speech_threshold
        self.speech_start_ms = speech_start_ms
        self.silence_ms = silence_ms
        self.transcript = transcript or (lambda turn: f"caller turn {turn}")
        self.heard = heard
        self.recognise = recognise
        self.transcript_delay_s = transcript_delay_s
        self.reply_text = reply_text or (lambda turn: f"loopback reply {turn}")
        self.tool_call = tool_call or (lambda _turn: None)
        self.tool_call_in = tool_call_in
        self.session_cap_s = session_cap_s
        self.announce_expiry = announce_expiry
        self.playout_delay_s = playout_delay_s
        self.keep_audio = keep_audio
        self.api_key = api_key
        self.connect_delay_s = connect_delay_s
        # fail_rule(n) -> "close_frame_only" | "silent" | None: connection n misbehaves when a
        # reply is first due (at its first speech_stopped) instead of answering: it sends a
        # close frame but keeps TCP open, or it goes silent (no data, no pongs)
        self.fail_rule: Callable[[int], str | None] = lambda _n: None
        self.connections: list[RealtimeConnection] = []
        self.reject_next: int = 0  # refuse this many upcoming handshakes with HTTP 503
        # drop_rule(n) -> close code (or None): connection n (0-based) closes itself with that
        # code once it has received drop_after_ms of audio
        self.drop_rule: Callable[[int], int | None] = lambda _n: None
        self.drop_after_ms = 600.0
        self._server: Any = None
        self._live: set[ServerConnection] = set()
        self.misbehaving: set[ServerConnection] = set()  # reading paused: reset them at exit
        self.url = ""

    async def __aenter__(self) -> LoopbackRealtimeServer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, max_size=8 * 1024 * 1024, process_request=self._gate
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime?model=loopback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.misbehaving:  # they would never see a close (nor wait out its timeout)
            ws.transport.abort()
        self._server.close()
        await self._server.wait_closed()

    async def _gate(self, connection: ServerConnection, request: Any) -> Any:
        if self.connect_delay_s > 0:
            await asyncio.sleep(self.connect_delay_s)
        if self.api_key is not None:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if sent != self.api_key:
                response = connection.respond(401, _invalid_key(sent))
                response.headers["Content-Type"] = "application/json"
                return response
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
        conn.fail_mode = self.fail_rule(len(self.connections))
        self.connections.append(conn)
        self._live.add(ws)
        try:
            await LoopbackSession(self, ws, conn, len(self.connections)).run()
        finally:
            self._live.discard(ws)
            conn.closed.set()


def _invalid_key(sent: str) -> str:
    """OpenAI's 401 body for a wrong key (it shows the key's first and last characters)."""
    shown = f"{sent[:3]}{'*' * 10}{sent[-4:]}" if len(sent) > 8 else "***"
    message = (
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    return json.dumps({"error": error})
