"""A fake GPT-Live server on loopback (``wss://…/v1/live/sessions``), for tests and benchmarks.

Point the official client at it: ``AsyncOpenAI(api_key=..., base_url=fake.base_url)``, then
``client.live.connect()``. Every frame both ways is validated against the ``openai`` package's
GPT-Live event unions (``openai.types.live.ClientEvent`` and ``ServerEvent``), with the real
server's strictness on top (``../shared/reference/gpt_live.md``): unknown fields are rejected
(the ``openai`` models keep them as extras), the first event must be ``session.start`` and
nothing else is taken before ``session.started`` (``audio.format.rate`` is required by the
models themselves). A refused client event is answered with ``error`` carrying its
``client_event_id``, and kept in :attr:`LiveConnection.refused`.

The fake model:

- speaks ``greeting`` when told to (``session.commentary.append``) and ``reply(n)`` after the
  caller's ``n``-th turn, as ``session.output_audio.delta`` in the session's format (μ-law when
  ``audio/pcmu``; ``audio/pcm`` 24 kHz otherwise), ``chunk_ms`` at a time at real-time pace, with
  ``session.output_transcript.delta`` fragments;
- hears the caller with an energy detector on appended audio: speech for ``speech_start_ms``
  starts a turn, ``silence_ms`` of quiet ends it (``session.input_transcript.delta`` with
  ``heard(n)``);
- yields: caller energy for ``yield_ms`` while it speaks stops its audio there (GPT-Live decides
  when to stop; nothing the client sends can);
- delegates when ``delegate(n)`` names function calls for turn ``n`` (of the tools the session
  gave its delegate; a model cannot call others): ``session.delegation.created`` then one
  ``response.event`` per call (an inner ``response.output_item.done``) and one with the inner
  ``response.completed`` (the batch is complete; its ``usage``), waits for a
  ``function_call_output`` for each and one ``response.create`` (a partial batch is an error),
  then speaks ``reply(n)``;
- takes ``session.update`` of the delegation (a handoff): its delegate's tools are the new
  ones from then on (``session.updated``);
- reports ``session.usage.updated`` after each reply and ``session.closed`` on ``session.close``
  (``close_requested``) or on :meth:`LiveConnection.expire` (``expired``); :meth:`drop` closes the
  socket with no ``session.closed``;
- plays fixture audio (``session.output_audio.fixture.play``): ``…fixture.playing`` at once,
  ``…fixture.played`` once its length has passed; meanwhile it refuses another fixture and
  ``session.commentary.append``, ``session.thinking.append`` and
  ``session.instructions.append``, as the real server does (:attr:`LiveConnection.fixtures`);
- takes a sideband (``/v1/live/sessions/{id}/attach``, a SIP call's session, started
  already): no ``session.start`` there, its audio in pcm16 24 kHz (as reflections are), and
  :meth:`LiveConnection.caller_turn` stands for the caller's speech it hears on the SIP leg.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection, serve

from ..audio import ulaw_decode
from .live_wire import CLIENT, FIXTURE_BLOCKS, SERVER, SERVER_FIELDS, unknown_fields
from .realtime_session import ulaw_from_pcm24

__all__ = ["FakeLiveServer", "LiveConnection"]

RATE_PCM = 24000


@dataclass
class LiveConnection:
    """One client connection, as the fake saw it."""

    received: list[dict[str, Any]] = field(default_factory=list)  # every client event, raw
    sent: list[dict[str, Any]] = field(default_factory=list)  # every server event
    refused: list[tuple[str, str]] = field(default_factory=list)  # (event type, why)
    session: dict[str, Any] | None = None  # session.start's config
    audio_bytes: int = 0  # caller audio appended, in the session's format
    turns: int = 0
    yielded: int = 0  # replies cut short by the caller's energy
    outputs: list[dict[str, Any]] = field(default_factory=list)  # function_call_output items
    closed_reason: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)  # the session as session.started said
    attached: str | None = None  # a sideband's session id (``…/sessions/{id}/attach``)
    started_at: float = 0.0  # time.monotonic() of session.started
    fixtures: list[tuple[float, float]] = field(default_factory=list)  # (from, until) ms
    _ws: ServerConnection | None = None
    _owner: FakeLiveServer | None = None
    _state: Any = None

    def clock_ms(self) -> int:
        """Milliseconds since ``session.started``."""
        return round((time.monotonic() - self.started_at) * 1000)

    def types(self) -> list[str]:
        return [e.get("type", "") for e in self.received]

    async def expire(self) -> None:
        """The session's time is up: ``session.closed`` (``expired``), then the socket closes."""
        assert self._owner is not None
        await self._owner._close(self, "expired")

    async def send(self, event: dict[str, Any], validate: bool = True) -> None:
        """Send a server event now (``validate=False``: one the client's types do not know,
        sent as it is)."""
        assert self._owner is not None and self._ws is not None
        if validate:
            await self._owner._send(self, event)
        else:
            self.sent.append(event)
            await self._ws.send(json.dumps(event))

    async def caller_turn(self) -> None:
        """A caller's turn the fake heard elsewhere (a SIP call's audio never reaches a
        sideband): its transcript, then a reply or a delegation, as for appended audio."""
        assert self._owner is not None
        await self._owner._turn(self, self._state)

    async def drop(self) -> None:
        """The socket goes away with no ``session.closed`` (a network failure)."""
        assert self._ws is not None
        self._ws.transport.abort()


class FakeLiveServer:
    """The fake; ``async with FakeLiveServer(...) as fake``, then ``fake.base_url``.

    Args:
        greeting: pcm16 24 kHz audio spoken for a ``session.commentary.append``.
        reply: pcm16 24 kHz audio for the caller's turn ``n`` (0-based).
        heard: the input transcript of turn ``n``.
        delegate: function calls for turn ``n`` as ``[(name, arguments JSON)]``; empty: none.
        delegate_for: as ``delegate``, told the session's ``session.start`` config too (two
            agents on one fake, such as a warm transfer's caller and person legs); overrides
            ``delegate``.
        yield_ms: caller energy for this long while the model speaks stops it (None: never).
        validate: check every frame both ways against the ``openai`` types (False: a load
            benchmark's fake, whose generator core must not be the bottleneck).
    """

    def __init__(
        self,
        greeting: bytes = b"",
        reply: Callable[[int], bytes] = lambda _n: b"",
        heard: Callable[[int], str] = lambda n: f"caller turn {n}",
        delegate: Callable[[int], list[tuple[str, str]]] = lambda _n: [],
        yield_ms: int | None = 200,
        speech_threshold: float = 500.0,
        speech_start_ms: int = 60,
        silence_ms: int = 500,
        chunk_ms: int = 100,
        session_s: int = 3600,
        validate: bool = True,
        delegate_for: Callable[[dict[str, Any], int], list[tuple[str, str]]] | None = None,
    ) -> None:
        self.greeting, self.reply, self.heard, self.delegate = greeting, reply, heard, delegate
        self.delegate_for = delegate_for
        self.yield_ms, self.threshold = yield_ms, speech_threshold
        self.speech_start_ms, self.silence_ms, self.chunk_ms = speech_start_ms, silence_ms, chunk_ms
        self.session_s = session_s
        self.validate = validate
        self.connections: list[LiveConnection] = []
        self.base_url = ""
        self._ids = itertools.count(1)
        self._server: Any = None

    async def __aenter__(self) -> FakeLiveServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    # ---------------------------------------------------------------- the wire

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    async def _send(self, conn: LiveConnection, event: dict[str, Any]) -> None:
        event = {k: v for k, v in event.items() if v is not None}
        if "event_id" in SERVER_FIELDS.get(event["type"], ()):  # output audio deltas have none
            event.setdefault("event_id", self._id("evt"))
        # a fake that speaks off the spec fails the test
        unknown = unknown_fields(SERVER.validate_python(event)) if self.validate else []
        if unknown:
            raise AssertionError(f"the fake sent unknown fields: {unknown}")
        conn.sent.append(event)
        assert conn._ws is not None
        with contextlib.suppress(Exception):
            await conn._ws.send(json.dumps(event))

    async def _refuse(self, conn: LiveConnection, raw: dict[str, Any], why: str) -> None:
        conn.refused.append((str(raw.get("type")), why))
        error = {"type": "invalid_request_error", "code": "invalid_event", "message": why}
        if raw.get("event_id"):
            error["client_event_id"] = raw["event_id"]
        await self._send(conn, {"type": "error", "error": error})

    async def _handle(self, ws: ServerConnection) -> None:
        conn = LiveConnection(_ws=ws, _owner=self, _state=_State())
        self.connections.append(conn)
        state = conn._state
        path = ws.request.path if ws.request is not None else ""
        if path.rstrip("/").endswith("/attach"):  # the sideband of a running (SIP) session
            conn.attached = path.rstrip("/").split("/")[-2]
            conn.session, conn.started_at = {}, time.monotonic()
            conn.resource = {"id": conn.attached}
        try:
            async for message in ws:
                raw = json.loads(message)
                conn.received.append(raw)
                if not self.validate:
                    await self._on_event(conn, state, raw)
                    continue
                try:
                    event = CLIENT.validate_python(raw)
                except ValidationError as exc:
                    await self._refuse(conn, raw, f"invalid event: {exc.errors()[0]['msg']}")
                    continue
                unknown = unknown_fields(event)
                if unknown:
                    await self._refuse(conn, raw, f"unknown fields: {', '.join(unknown)}")
                    continue
                await self._on_event(conn, state, raw)
        except Exception:  # the socket went away (a drop): the session just ends
            pass
        finally:
            for task in state.tasks:
                task.cancel()

    # ---------------------------------------------------------------- the model

    async def _on_event(self, conn: LiveConnection, state: _State, raw: dict[str, Any]) -> None:
        kind = raw["type"]
        if conn.session is None:
            if kind != "session.start":
                await self._refuse(conn, raw, "nothing before session.start")
                return
            audio_format = ((raw["session"].get("audio") or {}).get("format")) or {}
            conn.session = raw["session"]
            state.pcmu = audio_format.get("type") == "audio/pcmu"
            conn.started_at = time.monotonic()
            conn.resource = {
                "id": self._id("live_fake"),
                "expires_at": int(time.time()) + self.session_s,
                "model": conn.session["model"],
                "status": "active",
            }
            await self._send(conn, {"type": "session.started", "session": conn.resource})
            return
        playing = bool(conn.fixtures) and conn.fixtures[-1][1] > conn.clock_ms()
        if playing and kind in FIXTURE_BLOCKS:
            await self._refuse(conn, raw, f"{kind} is rejected while an audio fixture is active")
            return
        if kind == "session.output_audio.fixture.play":
            self._play_fixture(conn, state, raw)
            return
        if kind == "session.input_audio.append":
            chunk = base64.b64decode(raw["audio"])
            conn.audio_bytes += len(chunk)
            await self._hear(conn, state, chunk)
        elif kind == "session.commentary.append":
            ms = conn.clock_ms()
            await self._send(
                conn,
                {"type": "session.commentary.appended", "start_ms": ms, "end_ms": ms,
                 "client_event_id": raw.get("event_id")},
            )  # fmt: skip
            state.speak(self, conn, self.greeting, "greeting")
        elif kind == "response.item.create":
            item = raw["item"]
            if item.get("type") == "function_call_output":
                conn.outputs.append(item)
                state.answered.add(item["call_id"])
        elif kind == "response.create":
            missing = state.pending - state.answered
            if missing:
                await self._refuse(conn, raw, f"no output for {sorted(missing)}")
                return
            if state.pending:
                turn, state.pending, state.answered = state.delegated_turn, set(), set()
                state.speak(self, conn, self.reply(turn), f"reply {turn}")
        elif kind == "session.update":  # only the delegation may change after start
            update = raw["session"].get("delegation", {}).get("responses", {})
            delegation = conn.session.get("delegation", {})  # (a new dict: received stays)
            responses = {**delegation.get("responses", {}), **update}
            conn.session = {**conn.session, "delegation": {**delegation, "responses": responses}}
            ack = {"session": conn.resource, "client_event_id": raw.get("event_id")}
            await self._send(conn, {"type": "session.updated", **ack})
        elif kind == "session.close":
            await self._close(conn, "close_requested")

    def _play_fixture(self, conn: LiveConnection, state: _State, raw: dict[str, Any]) -> None:
        ms = len(base64.b64decode(raw["audio"])) / 48
        conn.fixtures.append((conn.clock_ms(), conn.clock_ms() + ms))
        ack = {"client_event_id": raw.get("event_id")}

        async def play() -> None:
            await self._send(conn, {"type": "session.output_audio.fixture.playing", **ack})
            await asyncio.sleep(ms / 1000)
            await self._send(conn, {"type": "session.output_audio.fixture.played", **ack})

        state.run(play())

    async def _hear(self, conn: LiveConnection, state: _State, chunk: bytes) -> None:
        pcm = ulaw_decode(chunk) if state.pcmu else chunk
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
        rate = 8000 if state.pcmu else RATE_PCM
        ms = round(1000 * len(samples) / rate)
        state.heard_ms += ms
        loud = bool(samples.size) and math.sqrt(float(np.mean(samples**2))) > self.threshold
        if state.speaking_task is not None and loud and self.yield_ms is not None:
            state.caller_over_ms += ms
            if state.caller_over_ms >= self.yield_ms:
                state.speaking_task.cancel()  # the model yields to the caller
                state.speaking_task = None
                conn.yielded += 1
        elif not loud:
            state.caller_over_ms = 0
        state.run_ms = state.run_ms + ms if loud != state.in_speech else 0
        if not state.in_speech and state.run_ms >= self.speech_start_ms:
            state.in_speech, state.run_ms = True, 0
            state.speech_from_ms = state.heard_ms - self.speech_start_ms
        elif state.in_speech and state.run_ms >= self.silence_ms:
            state.in_speech, state.run_ms = False, 0
            await self._turn(conn, state)

    async def _turn(self, conn: LiveConnection, state: _State) -> None:
        n = conn.turns
        conn.turns += 1
        end = state.heard_ms - self.silence_ms
        await self._send(
            conn,
            {"type": "session.input_transcript.delta", "delta": self.heard(n),
             "start_ms": state.speech_from_ms, "end_ms": end},
        )  # fmt: skip
        config = conn.session or {}
        calls = self.delegate_for(config, n) if self.delegate_for else self.delegate(n)
        if "delegation" in config:  # the delegate calls only the tools it was given
            given = {t.get("name") for t in config["delegation"]["responses"].get("tools", [])}
            calls = [call for call in calls if call[0] in given]
        if not calls:
            state.speak(self, conn, self.reply(n), f"reply {n}")
            return
        delegation = self._id("dlg")
        response = self._id("resp")
        await self._send(
            conn,
            {"type": "session.delegation.created", "offset_ms": conn.clock_ms(),
             "delegation": {"type": "delegation", "id": delegation, "target": "responses",
                            "response_id": response}},
        )  # fmt: skip
        state.delegated_turn = n
        for name, arguments in calls:
            call_id = self._id("call")
            state.pending.add(call_id)
            item = {"type": "function_call", "id": self._id("fc"), "call_id": call_id,
                    "name": name, "arguments": arguments, "status": "completed"}  # fmt: skip
            inner = {"type": "response.output_item.done", "output_index": 0, "item": item}
            await self._send(
                conn, {"type": "response.event", "delegation_id": delegation, "event": inner}
            )
        # the delegate's response ends (the batch is complete), with its token usage
        usage = {"input_tokens": 1200, "output_tokens": 40,
                 "input_tokens_details": {"cached_tokens": 1000}}  # fmt: skip
        done = {"type": "response.completed",
                "response": {"id": response, "status": "completed", "usage": usage}}  # fmt: skip
        await self._send(
            conn, {"type": "response.event", "delegation_id": delegation, "event": done}
        )

    async def _close(self, conn: LiveConnection, reason: str) -> None:
        if conn.closed_reason is not None:
            return
        conn.closed_reason = reason
        usage = {"seconds": round(time.monotonic() - conn.started_at, 3)}
        await self._send(
            conn,
            {"type": "session.closed", "reason": reason, "session": conn.resource, "usage": usage},
        )
        assert conn._ws is not None
        with contextlib.suppress(Exception):
            await conn._ws.close()


@dataclass
class _State:
    """One connection's model state."""

    pcmu: bool = False
    heard_ms: int = 0  # caller audio heard, on the session's audio clock
    in_speech: bool = False
    run_ms: int = 0
    speech_from_ms: int = 0
    caller_over_ms: int = 0  # caller energy while the model speaks
    speaking_task: asyncio.Task[None] | None = None
    spoken_ms: int = 0
    pending: set[str] = field(default_factory=set)  # delegated call ids awaiting an output
    answered: set[str] = field(default_factory=set)
    delegated_turn: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def run(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def speak(self, fake: FakeLiveServer, conn: LiveConnection, pcm24: bytes, text: str) -> None:
        if self.speaking_task is not None:
            self.speaking_task.cancel()
        self.caller_over_ms = 0
        self.speaking_task = self.run(self._speak(fake, conn, pcm24, text))

    async def _speak(
        self, fake: FakeLiveServer, conn: LiveConnection, pcm24: bytes, text: str
    ) -> None:
        step = fake.chunk_ms * 48
        began = time.monotonic()
        for n, i in enumerate(range(0, len(pcm24), step)):
            chunk = pcm24[i : i + step]
            wire = ulaw_from_pcm24(chunk) if self.pcmu else chunk
            start = self.spoken_ms
            self.spoken_ms += len(chunk) // 48
            await fake._send(
                conn,
                {"type": "session.output_audio.delta",
                 "delta": base64.b64encode(wire).decode("ascii")},
            )  # fmt: skip
            if n == 0:
                await fake._send(
                    conn,
                    {"type": "session.output_transcript.delta", "delta": text,
                     "start_ms": start, "end_ms": self.spoken_ms},
                )  # fmt: skip
            # real-time pace: the next delta when this one's audio is due
            await asyncio.sleep(max(0.0, began + (i + step) / 48000 - time.monotonic()))
        usage = {"seconds": round(conn.clock_ms() / 1000, 3)}
        await fake._send(conn, {"type": "session.usage.updated", "usage": usage})
        if self.speaking_task is asyncio.current_task():
            self.speaking_task = None
