"""Choosing and configuring the realtime model behind each call's ``RealtimeSession``.

One :class:`SessionFactory` per app; it builds a fresh model and session per call (a model object
holds one connection). Formats are pinned to pcm16 24 kHz both ways in the run config as well as
the initial settings, so an agent handoff's ``session.update`` keeps them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from agents.realtime import (
    RealtimeAgent,
    RealtimeModel,
    RealtimePlaybackTracker,
    RealtimeRunner,
    RealtimeSession,
)
from agents.realtime.config import RealtimeRunConfig, RealtimeSessionModelSettings
from agents.realtime.model import RealtimeModelConfig
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from agents.realtime.openai_realtime import OpenAIRealtimeSIPModel

from ..config import Settings
from .briefing import agent_for_leg
from .openai_model import PhoneRealtimeModel, PhoneSIPModel
from .tools import CallContext

__all__ = [
    "GREETING_INSTRUCTIONS",
    "OPERATOR_ENDS",
    "ModelFactory",
    "SessionFactory",
    "announce_transfer",
    "choose_backend",
    "closed_going_away",
    "create_response",
    "greet",
    "is_session_expired",
    "leave_voicemail",
    "phone_model_settings",
    "say_goodbye",
    "server_event",
    "session_expires_at",
]

logger = logging.getLogger("telephony.agent")

GREETING_INSTRUCTIONS = "The call has just connected. Greet the caller by saying: {}"
GOODBYE_INSTRUCTIONS = "{} In one short sentence, say goodbye to the caller. Do not ask anything."
OPERATOR_ENDS = "The call is being ended by the operator now."
TRANSFER_INSTRUCTIONS = (
    "The operator is transferring the caller to {} now. In one short sentence, tell the caller "
    "so. Do not ask anything."
)

ModelFactory = Callable[[], RealtimeModel]


def phone_model_settings(settings: Settings) -> RealtimeSessionModelSettings:
    """Session settings for a phone call: pcm16 both ways, turn detection and input noise
    reduction from the settings (``TURN_DETECTION``, ``VAD_*``, ``INPUT_NOISE_REDUCTION``),
    caller transcripts.

    With ``BARGE_IN_GUARD`` on, the model neither cancels its reply when the caller starts
    speaking (``interrupt_response``) nor answers by itself when they stop
    (``create_response``): the bridge decides both (:mod:`telephony.bridge.barge_in`).
    """
    guarded = settings.barge_in_guard
    turn_detection: dict[str, Any] = {
        "type": settings.turn_detection,
        "interrupt_response": not guarded,
        "create_response": not guarded,
    }
    if settings.turn_detection == "server_vad":
        turn_detection |= {
            "threshold": settings.vad_threshold,
            "prefix_padding_ms": settings.vad_prefix_padding_ms,
            "silence_duration_ms": settings.vad_silence_duration_ms,
        }
    else:
        turn_detection["eagerness"] = settings.vad_eagerness
    model_settings: RealtimeSessionModelSettings = {
        "model_name": settings.openai_realtime_model,
        "voice": settings.voice,
        "modalities": ["audio"],
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"},
        "turn_detection": turn_detection,  # type: ignore[typeddict-item]
    }
    if settings.input_noise_reduction != "off":
        model_settings["input_audio_noise_reduction"] = {"type": settings.input_noise_reduction}
    return model_settings


def choose_backend(settings: Settings) -> str:
    """``REALTIME_BACKEND``; ``auto`` means OpenAI with a key, the offline model without."""
    if settings.realtime_backend != "auto":
        return settings.realtime_backend
    return "openai" if settings.openai_api_key is not None else "local"


async def create_response(session: RealtimeSession, instructions: str) -> None:
    """Ask the model to speak now (``response.create``), with ``instructions`` for this response
    only: the greeting, or picking up the thread after a reconnect. A GPT-Live session
    (:class:`~telephony.agent.live.LiveSession`, which has no ``response.create`` for speech)
    takes ``instructions`` as a commentary instruction instead."""
    respond = getattr(session, "respond", None)
    if respond is not None:
        await respond(instructions)
        return
    await session.model.send_event(
        RealtimeModelSendRawMessage(
            message={
                "type": "response.create",
                "other_data": {"response": {"instructions": instructions}},
            }
        )
    )


async def greet(session: RealtimeSession, greeting: str) -> None:
    """Ask the agent to say ``greeting`` first, as soon as the call connects."""
    await create_response(session, GREETING_INSTRUCTIONS.format(greeting))


async def say_goodbye(session: RealtimeSession, why: str = OPERATOR_ENDS) -> None:
    """Ask the agent for a short goodbye; ``why`` tells it why the call ends (one sentence)."""
    await create_response(session, GOODBYE_INSTRUCTIONS.format(why))


def server_event(event: Any) -> dict[str, Any] | None:
    """The OpenAI server event (a dict, as sent) inside a ``RealtimeSession`` event, or None
    when it carries none (the SDK wraps each as ``raw_model_event`` → ``raw_server_event``)."""
    if getattr(event, "type", None) != "raw_model_event":
        return None
    data = getattr(event, "data", None)
    if getattr(data, "type", None) != "raw_server_event":
        return None
    raw = getattr(data, "data", None)
    return raw if isinstance(raw, dict) else None


def session_expires_at(raw: dict[str, Any]) -> float | None:
    """When a session ends (Unix seconds) from OpenAI's ``session.created`` (``expires_at``),
    or None for any other event."""
    if raw.get("type") != "session.created":
        return None
    expires = (raw.get("session") or {}).get("expires_at")
    return float(expires) if isinstance(expires, int | float) and expires > 0 else None


def is_session_expired(raw: dict[str, Any]) -> bool:
    """OpenAI's ``error`` event at the session cap (``code: session_expired``)."""
    return raw.get("type") == "error" and (raw.get("error") or {}).get("code") == (
        "session_expired"
    )


def closed_going_away(exc: BaseException) -> bool:
    """True when a send failed because the model's server closed the socket cleanly with 1001
    (going away): what OpenAI does at the session cap, after its ``session_expired`` error. Who
    reads the session's events decides whether that was the cap or a failure."""
    return (
        isinstance(exc, websockets.ConnectionClosedOK)
        and exc.rcvd is not None
        and exc.rcvd.code == 1001
    )


VOICEMAIL_INSTRUCTIONS = (
    "You have reached an answering machine and its beep has sounded. Leave this message now, "
    "word for word, then stop; do not ask anything: {}"
)


async def leave_voicemail(session: RealtimeSession, message: str) -> None:
    """Ask the agent to say ``message`` to an answering machine, in its own voice."""
    await create_response(session, VOICEMAIL_INSTRUCTIONS.format(message))


async def announce_transfer(session: RealtimeSession, destination: str) -> None:
    """Ask the agent to tell the caller they are being transferred to ``destination``."""
    await create_response(session, TRANSFER_INSTRUCTIONS.format(destination))


class SessionFactory:
    """Builds one not-yet-connected ``RealtimeSession`` per call.

    Args:
        settings: service settings (model name, URL, key, voice).
        agent: the agent every call starts with.
        model_factory: makes a fresh ``RealtimeModel`` per call; defaults to the SDK's
            ``OpenAIRealtimeWebSocketModel``.
    """

    def __init__(
        self,
        settings: Settings,
        agent: RealtimeAgent,
        model_factory: ModelFactory | None = None,
    ) -> None:
        self._settings = settings
        self._agent = agent
        self._model_factory = model_factory
        self.model_settings = phone_model_settings(settings)

    @property
    def agent(self) -> RealtimeAgent:
        """The agent every call starts with."""
        return self._agent

    def model_config(self, tracker: RealtimePlaybackTracker) -> RealtimeModelConfig:
        """The SDK ``model_config`` for one call (contains the API key: never log it)."""
        config: RealtimeModelConfig = {
            "initial_model_settings": dict(self.model_settings),  # type: ignore[typeddict-item]
            "playback_tracker": tracker,
        }
        if self._settings.openai_api_key is not None:
            config["api_key"] = self._settings.openai_api_key.get_secret_value()
        if self._settings.openai_realtime_url:
            config["url"] = self._settings.openai_realtime_url
        return config

    def sip_settings(self) -> RealtimeSessionModelSettings:
        """Settings for a SIP call: SIP negotiates the audio format (G.711) itself, and a
        ``call_id`` attach may not name a model. OpenAI plays the audio on SIP, so it keeps
        deciding barge-in and answering (no bridge sees the audio to guard it)."""
        settings = dict(self.model_settings)
        for key in ("model_name", "input_audio_format", "output_audio_format"):
            settings.pop(key, None)
        settings["turn_detection"] = {
            **settings["turn_detection"],  # type: ignore[typeddict-item]
            "interrupt_response": True,
            "create_response": True,
        }
        return settings  # type: ignore[return-value]

    async def sip_accept_payload(self, context: CallContext) -> dict[str, Any]:
        """The session configuration for ``calls.accept``: built from the same agent with the
        SDK's ``OpenAIRealtimeSIPModel.build_initial_session_payload``."""
        payload = await OpenAIRealtimeSIPModel.build_initial_session_payload(
            self._agent,
            context=context,
            model_config={"initial_model_settings": self.sip_settings()},
            run_config={"model_settings": self.sip_settings()},
        )
        body = payload.model_dump(mode="json", exclude_none=True)
        body["model"] = self._settings.openai_realtime_model
        for direction in ("input", "output"):  # SIP negotiates the codec
            body.get("audio", {}).get(direction, {}).pop("format", None)
        return body

    async def open_sip(self, context: CallContext) -> RealtimeSession:
        """A session attached to the SIP call ``context.call_sid`` (the OpenAI call_id)."""
        config: RealtimeModelConfig = {
            "call_id": context.call_sid,
            "initial_model_settings": self.sip_settings(),
        }
        if self._settings.openai_api_key is not None:
            config["api_key"] = self._settings.openai_api_key.get_secret_value()
        if self._settings.openai_realtime_url:  # the same server, attached by call_id
            parts = urlsplit(self._settings.openai_realtime_url)
            query = urlencode({"call_id": context.call_sid})
            config["url"] = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        run_config: RealtimeRunConfig = {"model_settings": self.sip_settings()}
        runner = RealtimeRunner(self._agent, model=self._sip_model(), config=run_config)
        return await runner.run(context=context, model_config=config)

    def _sip_model(self) -> PhoneSIPModel:
        s = self._settings
        return PhoneSIPModel(
            s.model_silence_timeout,
            s.model_ping_timeout,
            s.model_close_timeout,
            accepted_model=s.openai_realtime_model,
        )

    async def open(self, tracker: RealtimePlaybackTracker, context: CallContext) -> RealtimeSession:
        """A session for one call (its tools see ``context``); connect it with ``enter()``. A
        warm transfer's person leg (its control has a ``briefing``) gets the briefing agent."""
        model = (
            self._model_factory()
            if self._model_factory is not None
            else PhoneRealtimeModel(
                self._settings.model_silence_timeout,
                self._settings.model_ping_timeout,
                self._settings.model_close_timeout,
            )
        )
        run_config: RealtimeRunConfig = {"model_settings": dict(self.model_settings)}  # type: ignore[typeddict-item]
        agent = agent_for_leg(self._agent, context.control)  # a person leg's: the briefing
        runner = RealtimeRunner(agent, model=model, config=run_config)
        return await runner.run(context=context, model_config=self.model_config(tracker))
