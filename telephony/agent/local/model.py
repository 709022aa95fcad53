"""The offline voice model as the SDK's ``RealtimeModel``: one per call, no OpenAI key, no network.

It is a stand-in for trying the phone path end to end, **not an assistant**: it listens
(:mod:`.turns`), hears (Whisper, :mod:`.stack`), decides what to say (:mod:`.responder`) and
speaks (Piper). It emits the same model events as the OpenAI model, so the session, the bridge,
the playback tracker and the call log are unchanged. Like OpenAI's, it follows the session's
``turn_detection``: with ``interrupt_response`` on, speech while the agent's audio is still
playing (per the playback tracker) is a barge-in (``audio_interrupted``, so the bridge sends
``clear``); with ``create_response`` off it answers a turn only when ``response.create`` asks,
and ``conversation.item.delete`` forgets one (the bridge's barge-in guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from typing import Any

import numpy as np
from agents.realtime.model import RealtimeModel, RealtimeModelConfig, RealtimeModelListener
from agents.realtime.model_events import (
    RealtimeModelAudioDoneEvent,
    RealtimeModelAudioEvent,
    RealtimeModelAudioInterruptedEvent,
    RealtimeModelEvent,
    RealtimeModelInputAudioTranscriptionCompletedEvent,
    RealtimeModelRawServerEvent,
    RealtimeModelToolCallEvent,
    RealtimeModelTranscriptDeltaEvent,
    RealtimeModelTurnEndedEvent,
    RealtimeModelTurnStartedEvent,
)
from agents.realtime.model_inputs import (
    RealtimeModelSendAudio,
    RealtimeModelSendEvent,
    RealtimeModelSendInterrupt,
    RealtimeModelSendRawMessage,
    RealtimeModelSendSessionUpdate,
    RealtimeModelSendToolOutput,
    RealtimeModelSendUserInput,
)

from .responder import Say, UseTool, after_tool, greeting_text, reply_to
from .stack import LocalStack
from .turns import Paused, SpeechStarted, TurnDetector, sounds_finished

__all__ = ["LocalRealtimeModel"]

CHUNK_MS = 100  # audio per emitted delta
SPECULATE_MS = 150  # quiet after which the words so far are transcribed early


class LocalRealtimeModel(RealtimeModel):
    """The SDK's ``RealtimeModel`` interface over :class:`LocalStack`. One per call.

    Args:
        stack: the loaded models.
        silence_ms: silence that ends the caller's turn.
    """

    def __init__(self, stack: LocalStack, silence_ms: int = 600, end_ms: int | None = None) -> None:
        self._stack = stack
        self._silence_ms = silence_ms
        self._end_ms = end_ms
        self._early: tuple[int, asyncio.Task[str]] | None = None  # (pause, its transcription)
        self._listeners: list[RealtimeModelListener] = []
        self._ids = itertools.count(1)
        self._tracker: Any = None
        self._tools: dict[str, Any] = {}
        self._turns: TurnDetector | None = None
        self._speech_item: str | None = None
        self._response: asyncio.Task[None] | None = None
        self._last_item: tuple[str, float] | None = None  # (item id, audio ms)
        self._tasks: set[asyncio.Task[Any]] = set()
        # turn_detection.interrupt_response / create_response, as the session sets them
        self._interrupts = True
        self._answers = True
        self._heard: dict[str, str] = {}  # item id -> transcript, until answered or forgotten
        self._last_heard: str | None = None  # the newest transcribed item
        self._answer_next = False  # a response.create came before the transcript

    # ------------------------------------------------------------------ RealtimeModel

    async def connect(self, options: RealtimeModelConfig) -> None:
        self._tracker = options.get("playback_tracker")
        self._update_tools(options.get("initial_model_settings", {}))
        self._update_turns(options.get("initial_model_settings", {}))
        speculate = None if self._end_ms is None else min(SPECULATE_MS, self._end_ms)
        self._turns = TurnDetector(
            self._stack.new_vad(), self._silence_ms, speculate, self._end_ms or 0
        )

    def add_listener(self, listener: RealtimeModelListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: RealtimeModelListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def send_event(self, event: RealtimeModelSendEvent) -> None:
        if isinstance(event, RealtimeModelSendAudio):
            await self._hear(event.audio)
        elif isinstance(event, RealtimeModelSendUserInput):
            self._start(self._act(reply_to(_text_of(event.user_input), self._tools)))
        elif isinstance(event, RealtimeModelSendToolOutput):
            if event.start_response:
                self._start(self._say(after_tool(event.tool_call.name)))
        elif isinstance(event, RealtimeModelSendRawMessage):
            kind = event.message["type"]
            other: dict[str, Any] = event.message.get("other_data") or {}  # type: ignore[assignment]
            if kind == "conversation.item.delete":
                self._heard.pop(str(other.get("item_id")), None)
            elif kind == "response.create" and not other.get("response"):
                # the bridge answers the caller's last turn (create_response off): now, or
                # once its transcript is in
                if self._last_heard is None:
                    self._answer_next = True
                else:
                    self._answer_heard(self._last_heard)
            elif kind == "response.create":
                instructions = other.get("response", {}).get("instructions", "")
                self._start(self._say(greeting_text(instructions)))
        elif isinstance(event, RealtimeModelSendInterrupt):
            await self._cancel_response()
        elif isinstance(event, RealtimeModelSendSessionUpdate):
            self._update_tools(event.session_settings)
            self._update_turns(event.session_settings)

    async def close(self) -> None:
        await self._cancel_response()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ listening

    async def _hear(self, pcm24: bytes) -> None:
        turns = self._turns
        assert turns is not None, "send_event before connect"
        for event in turns.feed(pcm24):
            if isinstance(event, SpeechStarted):
                self._early = None
                await self._speech_started(event.at_ms)
            elif isinstance(event, Paused):  # transcribe the words so far while the caller is quiet
                task = asyncio.create_task(asyncio.to_thread(self._stack.transcribe, event.audio))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self._early = (event.pause, task)
            else:
                await self._speech_stopped(event.at_ms, event.audio, self._early_for(event.pause))
        early = self._early
        if early is not None and early[1].done() and not early[1].cancelled():
            if early[1].exception() is None and sounds_finished(early[1].result()):
                stopped = turns.end_now(early[0])  # finished words: the turn ends now
                if stopped is not None:
                    await self._speech_stopped(stopped.at_ms, stopped.audio, early[1])

    def _early_for(self, pause: int) -> asyncio.Task[str] | None:
        """The early transcription of quiet stretch ``pause``: the whole turn, as nothing was
        said after it began."""
        early, self._early = self._early, None
        return early[1] if early is not None and pause and early[0] == pause else None

    async def _speech_started(self, at_ms: int) -> None:
        self._speech_item = self._id("item")
        await self._emit(
            RealtimeModelRawServerEvent(
                data={
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": at_ms,
                    "item_id": self._speech_item,
                }
            )
        )
        if self._interrupts and self._still_playing():  # barge-in: talk over the agent
            item_id, _ = self._last_item  # type: ignore[misc]
            await self._cancel_response()
            self._last_item = None
            await self._emit(RealtimeModelAudioInterruptedEvent(item_id=item_id, content_index=0))

    def _still_playing(self) -> bool:
        if self._last_item is None:
            return False
        item_id, length_ms = self._last_item
        state = self._tracker.get_state() if self._tracker is not None else None
        if not state or state["current_item_id"] != item_id:
            return True  # none of it confirmed played yet
        return (state["elapsed_ms"] or 0.0) < length_ms - 2 * CHUNK_MS / 5

    async def _speech_stopped(
        self, at_ms: int, audio: np.ndarray, early: asyncio.Task[str] | None = None
    ) -> None:
        self._early = None
        item_id = self._speech_item or self._id("item")
        await self._emit(
            RealtimeModelRawServerEvent(
                data={
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": at_ms,
                    "item_id": item_id,
                }
            )
        )
        self._start(self._answer(item_id, audio, early))

    async def _answer(
        self, item_id: str, audio: np.ndarray, early: asyncio.Task[str] | None = None
    ) -> None:
        transcript = ""
        if early is not None:
            with contextlib.suppress(Exception):
                transcript = await early
        if early is None or (not transcript and len(audio)):
            transcript = await asyncio.to_thread(self._stack.transcribe, audio)
        if not self._answers:  # the bridge decides whether this turn gets an answer
            self._heard[item_id] = transcript
            self._last_heard = item_id
        # as the OpenAI model does: the server event raw (the barge-in guard reads it), then
        # the SDK's typed event
        await self._emit(
            RealtimeModelRawServerEvent(
                data={
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": transcript,
                }
            )
        )
        await self._emit(
            RealtimeModelInputAudioTranscriptionCompletedEvent(
                item_id=item_id, transcript=transcript
            )
        )
        if self._answers:
            await self._act(reply_to(transcript, self._tools))
        elif self._answer_next and self._last_heard == item_id:
            self._answer_heard(item_id)

    def _answer_heard(self, item_id: str) -> None:
        self._answer_next = False
        self._last_heard = None
        self._start(self._act(reply_to(self._heard.pop(item_id, ""), self._tools)))

    # ------------------------------------------------------------------ answering

    async def _act(self, action: Say | UseTool) -> None:
        if isinstance(action, Say):
            await self._say(action.text)
        else:
            await self._call_tool(action.name, action.arguments)

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> None:
        response_id = self._id("resp")
        await self._emit(RealtimeModelTurnStartedEvent(response_id=response_id))
        await self._emit(
            RealtimeModelToolCallEvent(
                name=name,
                call_id=self._id("call"),
                arguments=json.dumps(arguments),
                id=self._id("item"),
            )
        )
        await self._emit(RealtimeModelTurnEndedEvent(response_id=response_id))

    async def _say(self, text: str) -> None:
        """Speak ``text`` clause by clause: the first one's audio goes out while the rest is
        synthesised (the first clause is often a fixed phrase, synthesised once and kept)."""
        response_id, item_id = self._id("resp"), self._id("item")
        await self._emit(RealtimeModelTurnStartedEvent(response_id=response_id))
        try:
            await self._emit(
                RealtimeModelTranscriptDeltaEvent(
                    item_id=item_id, delta=text, response_id=response_id
                )
            )
            said_ms = 0.0
            step = CHUNK_MS * 48
            for part in clauses(text):
                audio = await asyncio.to_thread(self._stack.speak, part)
                said_ms += len(audio) / 48
                self._last_item = (item_id, said_ms)
                for i in range(0, len(audio), step):
                    await self._emit(
                        RealtimeModelAudioEvent(
                            data=audio[i : i + step],
                            response_id=response_id,
                            item_id=item_id,
                            content_index=0,
                        )
                    )
            await self._emit(RealtimeModelAudioDoneEvent(item_id=item_id, content_index=0))
        finally:
            await self._emit(RealtimeModelTurnEndedEvent(response_id=response_id))

    # ------------------------------------------------------------------ plumbing

    def _start(self, coroutine: Any) -> None:
        if self._response is not None and not self._response.done():
            self._response.cancel()
        task = asyncio.create_task(coroutine)
        self._response = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_response(self) -> None:
        task, self._response = self._response, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _emit(self, event: RealtimeModelEvent) -> None:
        for listener in list(self._listeners):
            await listener.on_event(event)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_local_{next(self._ids)}"

    def _update_turns(self, settings: Any) -> None:
        """``turn_detection.interrupt_response`` and ``create_response`` (default on)."""
        detection = settings.get("turn_detection") if isinstance(settings, dict) else None
        if isinstance(detection, dict):
            self._interrupts = detection.get("interrupt_response", True) is not False
            self._answers = detection.get("create_response", True) is not False

    def _update_tools(self, settings: Any) -> None:
        tools = settings.get("tools") if isinstance(settings, dict) else None
        if tools is not None:
            self._tools = {getattr(t, "name", ""): t for t in tools}


def clauses(text: str) -> list[str]:
    """``text`` split after its first ``:``, ``.``, ``?`` or ``!`` (the first clause is spoken
    while the rest is synthesised); one piece when there is none."""
    match = re.search(r"[:.?!]\s+", text)
    if match is None or match.end() >= len(text):
        return [text]
    return [text[: match.end()].strip(), text[match.end() :].strip()]


def _text_of(user_input: Any) -> str:
    if isinstance(user_input, str):
        return user_input
    content = user_input.get("content", []) if isinstance(user_input, dict) else []
    return " ".join(c.get("text", "") for c in content if isinstance(c, dict))
