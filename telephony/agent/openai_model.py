"""The OpenAI Realtime WebSocket models as a phone call uses them: a socket found dead in about
a second, and the SDK's pydantic adapters built once, not per event.

Importing this module makes ``agents.realtime.openai_realtime`` build each ``TypeAdapter`` once
per type (see :func:`cached_type_adapter`). openai-agents 0.24 builds a new one for every raw
message it sends (``TypeAdapter(OpenAIRealtimeClientEvent)``: 6 ms of CPU on this machine, the
event loop blocked meanwhile) and for every conversation item it receives (0.1 ms). Replaying
500 turns into a new session sent 500 raw messages: 3 s during which no call on the worker
moved audio.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import websockets
from agents.realtime import openai_realtime
from agents.realtime.model_events import RealtimeModelRawServerEvent
from agents.realtime.model_inputs import RealtimeModelSendAudio, RealtimeModelSendEvent
from agents.realtime.openai_realtime import (
    _USER_AGENT,
    OpenAIRealtimeSIPModel,
    OpenAIRealtimeWebSocketModel,
    TransportConfig,
)
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from telephony.agent.frames import MaskKeys, masked_text_frame

__all__ = [
    "LivenessConnection",
    "ModelRefused",
    "ModelUnreachable",
    "PhoneRealtimeModel",
    "PhoneSIPModel",
    "append_message",
    "build_sdk_adapters",
    "cached_type_adapter",
]

logger = logging.getLogger("telephony.agent")


@functools.cache
def _adapter_for(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def cached_type_adapter(kind: Any, *args: Any, **kwargs: Any) -> TypeAdapter[Any]:
    """``pydantic.TypeAdapter(kind)``, built once per ``kind`` and reused (adapters are
    immutable and safe to share); with other arguments, or an unhashable ``kind``, a new one."""
    if args or kwargs:
        return TypeAdapter(kind, *args, **kwargs)
    try:
        return _adapter_for(kind)
    except TypeError:  # unhashable
        return TypeAdapter(kind)


openai_realtime.TypeAdapter = cached_type_adapter  # type: ignore[attr-defined,assignment]


def build_sdk_adapters() -> None:
    """Build now the pydantic adapters the SDK's OpenAI model otherwise builds at first use:
    the server events' (the first session's first event: 40 ms of CPU) and the client events'
    (a worker's first raw message, a caller turn's ``response.create``: 28 ms), each with the
    event loop blocked and every call's audio on the worker waiting (a load bench's profile put
    0.5 s of py-spy's wall clock on the second). Once per process; the server calls it at
    startup."""
    openai_realtime.get_server_event_type_adapter()
    cached_type_adapter(openai_realtime.OpenAIRealtimeClientEvent)
    cached_type_adapter(openai_realtime.RealtimeMessageItem)


class LivenessConnection(ClientConnection):
    """A websockets client connection that notices when its peer has gone quiet.

    Every byte received stamps ``last_heard``. :meth:`watch` starts a watchdog: once nothing
    has arrived for ``silence_s``, it pings; no pong within ``pong_timeout_s`` aborts the TCP
    connection at once (no close handshake: a peer that answers nothing will not answer that
    either), so the reader sees ``ConnectionClosedError`` and the caller's reconnect path runs.
    websockets' own keepalive pings on a fixed clock whatever arrives, and after a missing pong
    still waits ``close_timeout`` for the server to close TCP; this one pings only into
    silence and drops at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_heard = self.loop.time()
        self.dropped_for_silence = False
        self._watchdog: asyncio.Task[None] | None = None
        self._masks = MaskKeys()

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        super().connection_lost(exc)

    def send_now(self, message: str) -> bool:
        """Frame ``message`` (a text message) and write it to the transport at once, as
        websockets' ``send`` does, without its per-message send context (an async generator
        and a weak set: about a third of ``send``'s CPU per 1.3 kB caller frame, measured) and
        without its frame objects: the frame is built by
        :func:`~telephony.agent.frames.masked_text_frame` under a key from this connection's
        :class:`~telephony.agent.frames.MaskKeys`. Only when nothing could make ``send`` wait
        or fail or frame otherwise: the connection open, no extension negotiated (the models
        turn permessage-deflate off), no fragmented message in progress and nothing of
        websockets' own waiting to be written, the transport neither paused by flow control nor
        closing. False otherwise, and nothing was sent: call ``send``. A write that fails
        aborts the transport (as ``send`` does; the reader then sees the connection closed) and
        raises."""
        protocol = self.protocol
        if (
            self.send_in_progress is not None
            or protocol.state is not State.OPEN
            or protocol.expect_continuation_frame
            or protocol.writes
            or protocol.extensions
            or self.paused
            or self.transport.is_closing()
        ):
            return False
        try:
            self.transport.write(masked_text_frame(message.encode(), self._masks.take()))
        except Exception:
            self.transport.abort()
            raise
        return True

    def watch(self, silence_s: float, pong_timeout_s: float) -> None:
        """Start the watchdog (after the opening handshake); it ends with the connection."""
        self._watchdog = asyncio.create_task(
            self._watch(silence_s, pong_timeout_s), name="model-socket-watchdog"
        )

    async def _watch(self, silence_s: float, pong_timeout_s: float) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                quiet_for = self.loop.time() - self.last_heard
                if quiet_for < silence_s:
                    await asyncio.sleep(silence_s - quiet_for)
                    continue
                pong = await self.ping()
                try:
                    async with asyncio.timeout(pong_timeout_s):
                        await pong
                except TimeoutError:
                    self.dropped_for_silence = True
                    logger.warning(
                        "model socket silent %.1f s and no pong in %.1f s: dropping it",
                        self.loop.time() - self.last_heard,
                        pong_timeout_s,
                    )
                    self.transport.abort()
                    return


class _PhoneSocket:
    """The SDK's connection factory (openai-agents 0.24: same headers, user agent and size
    limit) with permessage-deflate off, a bounded close handshake and the silence watchdog.

    - A call sends 50 base64 audio frames a second each way; they barely compress, and
      compressing each one costs CPU and latency (about 3 % of the server's time under load, by
      py-spy).
    - ``close_timeout`` bounds the close handshake: when the server sends a close frame but
      keeps TCP open, websockets would wait 10 s before anyone saw the socket was gone (and a
      send would stall as long); the SDK's transport options do not expose it.
    - :class:`LivenessConnection` finds a socket that stopped answering (TCP gone quiet).
    """

    _silence_s: float
    _pong_timeout_s: float
    _close_timeout_s: float

    def _liveness(self, silence_s: float, pong_timeout_s: float, close_timeout_s: float) -> None:
        self._silence_s = silence_s
        self._pong_timeout_s = pong_timeout_s
        self._close_timeout_s = close_timeout_s

    async def _create_websocket_connection(
        self,
        url: str,
        headers: dict[str, str],
        transport_config: TransportConfig | None = None,
    ) -> ClientConnection:
        options: dict[str, Any] = {
            "user_agent_header": _USER_AGENT,
            "additional_headers": headers,
            "max_size": 8 * 1024 * 1024,
            "compression": None,
            "close_timeout": self._close_timeout_s,
            "ping_interval": None,  # LivenessConnection pings into silence instead
            "create_connection": LivenessConnection,
        }
        config = transport_config or {}
        for ours, theirs in (("open_timeout", "handshake_timeout"), ("max_size", "max_size")):
            if theirs in config:
                options[ours] = config[theirs]  # type: ignore[literal-required]
        try:
            connection = await websockets.connect(url, **options)
        except InvalidStatus as exc:
            raise ModelRefused.of(exc) from exc
        except OSError as exc:
            host = urlsplit(url).hostname
            raise ModelUnreachable(f"cannot reach {host}: {exc}") from exc
        assert isinstance(connection, LivenessConnection)
        connection.watch(self._silence_s, self._pong_timeout_s)
        return connection


class ModelUnreachable(ConnectionError):
    """The model's host could not be reached (no network, DNS, a firewall); the message names
    the host."""


class ModelRefused(ConnectionError):
    """The model refused the connection with an HTTP status; the message keeps OpenAI's own
    words (``Incorrect API key provided``), keys in it masked. ``permanent`` for 401 and 403:
    retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        return self.status in (401, 403)

    @classmethod
    def of(cls, exc: InvalidStatus) -> ModelRefused:
        response = exc.response
        said = ""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            said = str(json.loads(response.body or b"{}")["error"]["message"])
        said = _KEYS.sub("sk-…", said)[:300]
        return cls(
            f"HTTP {response.status_code}" + (f": {said}" if said else ""), response.status_code
        )


_KEYS = re.compile(r"\bsk-[A-Za-z0-9_*\-]+")
_APPEND_HEAD = '{"audio":"'
_APPEND_TAIL = '","type":"input_audio_buffer.append"}'


def append_message(audio: bytes) -> str:
    """The ``input_audio_buffer.append`` client event for ``audio`` (pcm16 24 kHz bytes), as
    the SDK writes it (``OpenAIInputAudioBufferAppendEvent.model_dump_json(exclude_unset=True)``:
    the same characters, pinned by a test), built without pydantic objects."""
    return _APPEND_HEAD + binascii.b2a_base64(audio, newline=False).decode("ascii") + _APPEND_TAIL


class PhoneRealtimeModel(_PhoneSocket, OpenAIRealtimeWebSocketModel):
    """The SDK's OpenAI WebSocket model on a socket found dead in about a second, with a lean
    path for caller audio: each 20 ms frame's ``input_audio_buffer.append`` goes straight to the
    socket (:func:`append_message`, written by :meth:`LivenessConnection.send_now` when it
    can) instead of through the SDK's pydantic event, its ``model_dump_json`` and its dispatch
    (about 8 % of the server's time under load). Every other event, and audio with ``commit``,
    takes the SDK's own path.

    Args:
        silence_s: ping the model after this many seconds with nothing received
            (``MODEL_SILENCE_TIMEOUT``).
        pong_timeout_s: no pong within this many seconds drops the socket
            (``MODEL_PING_TIMEOUT``).
        close_timeout_s: seconds a close handshake may take (``MODEL_CLOSE_TIMEOUT``).
    """

    def __init__(
        self, silence_s: float = 0.5, pong_timeout_s: float = 1.0, close_timeout_s: float = 1.0
    ) -> None:
        super().__init__()
        self._liveness(silence_s, pong_timeout_s, close_timeout_s)

    async def send_event(self, event: RealtimeModelSendEvent) -> None:
        socket = self._websocket
        if type(event) is RealtimeModelSendAudio and not event.commit and socket:
            message = append_message(event.audio)
            if not (isinstance(socket, LivenessConnection) and socket.send_now(message)):
                await socket.send(message)
            return
        await super().send_event(event)

    async def _handle_ws_event(self, event: dict[str, Any]) -> None:
        """As the SDK, except that with ``interrupt_response`` off a ``speech_started`` is
        only reported (``raw_server_event``): the SDK would emit ``audio_interrupted`` and
        truncate the agent's item at once, and whoever turned the model's own barge-in off
        decides interruptions (:mod:`telephony.bridge.barge_in`)."""
        if (
            isinstance(event, dict)
            and event.get("type") == "input_audio_buffer.speech_started"
            and not self._interrupts_on_speech()
        ):
            await self._emit_event(RealtimeModelRawServerEvent(data=event))
            return
        await super()._handle_ws_event(event)

    def _interrupts_on_speech(self) -> bool:
        """The session's ``turn_detection.interrupt_response`` (True when unknown)."""
        session = self._created_session
        audio_input = session.audio.input if session is not None and session.audio else None
        detection = audio_input.turn_detection if audio_input is not None else None
        return detection is None or detection.interrupt_response is not False


class PhoneSIPModel(_PhoneSocket, OpenAIRealtimeSIPModel):
    """The SDK's SIP model (attaches to a live ``call_id``) on the same watched socket; the
    timeouts are :class:`PhoneRealtimeModel`'s.

    Args:
        accepted_model: the model the call was accepted with (``calls.accept``). The sideband's
            ``session.update`` names it: a session update may not change the model (OpenAI's
            Realtime reference), and without it the SDK names its own default. An attach by
            ``call_id`` may not pass a ``model_name``, so it is set here.
    """

    def __init__(
        self,
        silence_s: float = 0.5,
        pong_timeout_s: float = 1.0,
        close_timeout_s: float = 1.0,
        accepted_model: str | None = None,
    ) -> None:
        super().__init__()
        if accepted_model:
            self.model = accepted_model
        self._liveness(silence_s, pong_timeout_s, close_timeout_s)
