"""One GPT-Live session over the official client (``openai``'s ``client.live.connect()``).

:class:`LiveSession` opens the socket, sends ``session.start`` and waits for
``session.started`` (nothing else may be sent before it), then carries the call: caller audio
(``session.input_audio.append``, μ-law as Twilio sent it), instructions to speak
(``session.commentary.append``: the greeting, a goodbye, an announcement), silent notes
(``session.thinking.append``: keypad digits), tool outputs, fixture audio
(``session.output_audio.fixture.play``: the hold sound on a SIP call), and ``session.close``.
GPT-Live rejects commentary and thinking while a fixture plays, so those wait, in order, for
its ``fixture.played`` (read by :meth:`events`). Server
events are read with :meth:`events`, typed by the ``openai`` package; dispatch is on
``.type`` (an event type the client does not know still carries it).

The client's own reconnect is off (``max_retries=0``): a new socket is a new GPT-Live session
that must be started and seeded, which the call's supervisor does. Facts and sources:
``../shared/reference/gpt_live.md``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import websockets
from openai import AsyncOpenAI

__all__ = ["APPEND", "AudioDelta", "LiveSession", "LiveSessionError"]


APPEND = '{"type": "session.input_audio.append", "audio": "%s"}'  # base64 needs no escaping


class AudioDelta:
    """A ``session.output_audio.delta``: ``delta`` is the base64 audio, in the session's
    format (it carries nothing else on the primary socket)."""

    __slots__ = ("delta",)
    type = "session.output_audio.delta"

    def __init__(self, delta: str) -> None:
        self.delta = delta


class LiveSessionError(Exception):
    """The session could not start (an ``error`` before ``session.started``, a closed socket,
    or no ``session.started`` in time)."""


class LiveSession:
    """One GPT-Live session. ``await open()``, then the senders; ``await close()`` at the end.

    Args:
        client: the ``AsyncOpenAI`` client (its ``base_url`` gives the socket's host).
        config: ``session.start``'s ``session`` (see :func:`~.config.plan_session`).
        attach: the ``live_…`` id of a session that runs already (a SIP call accepted with
            ``config``): :meth:`open` attaches to it over the sideband
            (``client.live.sideband.connect``) and sends no ``session.start``.
    """

    def __init__(
        self, client: AsyncOpenAI, config: dict[str, Any], attach: str | None = None
    ) -> None:
        self._client = client
        self.config = config
        self._attach = attach  # a SIP call's session id: attach over the sideband
        self._connection: Any = None
        self._manager: Any = None
        self._socket_send: Any = None
        self._ids = itertools.count(1)
        self.id: str | None = None  # ``live_…``, for OpenAI support
        self.expires_at: float | None = None  # Unix seconds, from ``session.started``
        self.usage: dict[str, Any] = {}  # the newest cumulative ``usage``
        self.closed_reason: str | None = None
        self.on_ask: Callable[[], None] | None = None  # told each time the model is asked to speak
        self.fixture_idle = asyncio.Event()  # no fixture audio is playing
        self.fixture_idle.set()
        self._fixture_id: str | None = None
        self._deferred: list[dict[str, Any]] = []  # commentary and thinking, held meanwhile

    def _event_id(self, kind: str) -> str:
        return f"{kind}_{next(self._ids)}"

    async def open(self, timeout_s: float) -> None:
        """Connect, ``session.start``, and wait for ``session.started`` (at most
        ``timeout_s``); or attach to a running session (``attach``). Raises
        :class:`LiveSessionError`, or the client's connection error."""
        if self._attach is not None:
            self.id = self._attach
            self._manager = self._client.live.sideband.connect(
                session_id=self._attach, max_retries=0
            )
            self._connection = await self._manager.enter()
            self._socket_send = self._connection.send_raw
            return
        self._manager = self._client.live.connect(max_retries=0)
        self._connection = await self._manager.enter()
        # the socket under the client's connection, for caller audio (see append_audio)
        socket = getattr(self._connection, "_connection", None)
        self._socket_send = getattr(socket, "send", None) or self._connection.send_raw
        await self._connection.send(
            {"type": "session.start", "event_id": self._event_id("start"), "session": self.config}
        )
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    event = await self._connection.recv()
                    if event.type == "session.started":
                        self.id = event.session.id
                        self.expires_at = getattr(event.session, "expires_at", None)
                        return
                    if event.type == "error":
                        raise LiveSessionError(f"session.start refused: {_error_text(event)}")
        except TimeoutError:
            await self.abort()
            raise LiveSessionError(f"no session.started within {timeout_s} s") from None
        except Exception:
            await self.abort()
            raise

    async def events(self) -> AsyncIterator[Any]:
        """Server events until the socket closes (cleanly: the iteration ends; otherwise the
        connection's error is raised). Each ``session.output_audio.delta`` is an
        :class:`AudioDelta` (read leanly: the bulk of the traffic); every other event is the
        client's own parse (``parse_event``)."""
        while True:
            try:
                data = await self._connection.recv_bytes()
            except websockets.ConnectionClosedOK:
                return
            raw = json.loads(data)
            if raw.get("type") == AudioDelta.type:
                yield AudioDelta(raw["delta"])
                continue
            event = self._connection.parse_event(data)
            if event.type == "session.output_audio.fixture.played" or (
                event.type == "error"
                and getattr(event.error, "client_event_id", None) == self._fixture_id
                and self._fixture_id is not None
            ):  # played, or refused (no ``played`` follows then)
                await self._fixture_over()
            if event.type == "session.usage.updated":
                self.usage = _plain(event.usage)
            elif event.type == "session.closed":
                self.closed_reason = event.reason
                self.usage = _plain(event.usage) or self.usage
            yield event

    async def append_audio(self, ulaw: bytes) -> None:
        """Caller audio in the session's format (μ-law 8 kHz, as Twilio sends it), 50 times a
        second: written as its JSON text to the socket under the client's connection. The
        client's own ``send`` transforms each event by its types first (about 200 µs a
        frame), and its ``send_raw`` goes through a reconnect queue that is always empty here
        (reconnects are off; about 30 % of a loaded server's samples); a test pins the text
        to what ``send`` writes."""
        await self._socket_send(APPEND % base64.b64encode(ulaw).decode("ascii"))

    async def respond(self, instructions: str) -> str:
        """Make the model speak now, in its own words (``session.commentary.append``, worded
        as an instruction: GPT-Live has no ``response.create`` for speech). Returns the
        event's id."""
        event_id = self._event_id("say")
        if self.on_ask is not None:
            self.on_ask()
        await self._send_or_defer(
            {"type": "session.commentary.append", "event_id": event_id,
             "content": instructions, "delegation_id": None}
        )  # fmt: skip
        return event_id

    async def play_fixture(self, pcm24: bytes) -> str:
        """Play ``pcm24`` (pcm16 little-endian mono, 24 kHz, at most 30 s) through the
        session's output (``session.output_audio.fixture.play``): it interrupts the model's
        speech and mutes input until played; one at a time (:attr:`fixture_idle` is clear
        meanwhile). Returns the event's id. Raises ValueError for more than 30 s."""
        if len(pcm24) > 30 * 48000:
            raise ValueError("a fixture is at most 30 s of pcm16 24 kHz")
        event_id = self._fixture_id = self._event_id("fixture")
        self.fixture_idle.clear()
        await self._connection.send(
            {"type": "session.output_audio.fixture.play", "event_id": event_id,
             "audio": base64.b64encode(pcm24).decode("ascii")}
        )  # fmt: skip
        return event_id

    async def _fixture_over(self) -> None:
        self._fixture_id = None
        self.fixture_idle.set()
        deferred, self._deferred = self._deferred, []
        for event in deferred:
            await self._connection.send(event)

    async def _send_or_defer(self, event: dict[str, Any]) -> None:
        if self.fixture_idle.is_set():
            await self._connection.send(event)
        else:
            self._deferred.append(event)

    async def send_message(self, text: str) -> None:
        """A note the model takes in silently (``session.thinking.append``), such as the
        keypad digits the caller pressed."""
        await self._send_or_defer(
            {"type": "session.thinking.append", "event_id": self._event_id("note"),
             "content": text, "delegation_id": None}
        )  # fmt: skip

    async def update_delegation(self, delegation: dict[str, Any]) -> None:
        """``session.update`` of the delegation (the only part GPT-Live lets change after
        start): a handoff's instructions and tools, see
        :func:`~.config.delegation_update`."""
        await self._connection.send(
            {"type": "session.update", "event_id": self._event_id("update"),
             "session": {"delegation": delegation}}
        )  # fmt: skip

    async def interrupt(self) -> None:
        """Nothing: no client event stops GPT-Live's speech (it decides when to yield)."""

    async def tool_outputs(self, outputs: list[tuple[str, str]]) -> None:
        """A delegated batch's answers: one ``function_call_output`` per ``(call_id, output)``,
        then a single ``response.create`` (the server refuses a partial batch)."""
        for call_id, output in outputs:
            await self._connection.send(
                {"type": "response.item.create", "event_id": self._event_id("output"),
                 "item": {"type": "function_call_output", "call_id": call_id, "output": output}}
            )  # fmt: skip
        if self.on_ask is not None:
            self.on_ask()
        await self._connection.send({"type": "response.create", "event_id": self._event_id("go")})

    async def close(self, timeout_s: float) -> None:
        """``session.close``, then wait (at most ``timeout_s``) for ``session.closed``, whose
        final usage :attr:`usage` keeps; then the socket closes. Never raises."""
        if self._connection is None:
            return
        with contextlib.suppress(Exception):
            await self._connection.send({"type": "session.close"})
            async with asyncio.timeout(timeout_s):
                async for _event in self.events():
                    if self.closed_reason is not None:
                        break
        await self.abort()

    async def abort(self) -> None:
        """Close the socket now. Never raises."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)


def _plain(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(exclude_none=True))
    return dict(value) if isinstance(value, dict) else {}


def _error_text(event: Any) -> str:
    error = getattr(event, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    return f"{code}: {message}" if code else str(message)
