"""The model session behind one call: connect, run, reconnect once after a failure, replay the
conversation into the new session, and apologise when the model is gone for good.

A failed first connect gets one retry. A session that fails mid-call (error, close, reset, a
send that fails) is replaced once: the conversation so far (the transcripts) is replayed as
``conversation.item.create`` items and the agent is asked to say sorry and go on. A second
failure, a shutdown or the call's time limit ends the call, politely when it can (``<Say>`` and
``<Hangup/>`` through Twilio's REST API).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.realtime import RealtimePlaybackTracker, RealtimeSession
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from ..agent.sessions import create_response, greet
from ..agent.tools import CallContext, CallControl
from ..config import CallLimits
from ..observability.call_log import describe_error
from ..observability.call_metrics import CallMetrics
from ..observability.recorder import SessionRecorder
from .outbound import OutboundAudio

__all__ = ["MODEL_FAILURES", "POLITE_ENDINGS", "OpenSession", "SessionSupervisor"]

logger = logging.getLogger("telephony.bridge")

OpenSession = Callable[[RealtimePlaybackTracker, CallContext], Awaitable[RealtimeSession]]
"""Builds a session (not yet connected) for a call: ``(tracker, context) -> RealtimeSession``."""

MODEL_FAILURES = frozenset(
    {"model_error", "model_ended", "model_send_failed", "model_connect_failed"}
)
POLITE_ENDINGS = frozenset({"server_shutdown", "max_duration"})  # we hang up: say goodbye
MAX_REPLAY_ITEMS = 40
RESUME_INSTRUCTIONS = (
    "The connection to you dropped for a moment and has just been restored. In one short "
    "sentence, say sorry for the interruption, then continue the conversation where it was."
)


class SessionSupervisor:
    """Runs one call's model sessions until the call ends.

    Args:
        open_session: builds a session for the call.
        limits: connect and close timeouts.
        record: writes a call-log record.
        recorder: the session recorder (the conversation so far, for the replay).
        metrics: the call's metrics (a new session restarts the model's audio clock).
        outbound: the call's outbound audio (a new tracker per session).
        control: what the agent's tools act on.
        greeting: said by the agent on the first session ('' for none).
        backend: which model answers, for the call log.
        reconnects: how many times a failed session is replaced.
        on_model_failure: ``(call_sid, reason) -> how``: tells the caller we are ending the call
            (through the carrier); None just closes the stream.
    """

    def __init__(
        self,
        open_session: OpenSession,
        limits: CallLimits,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        metrics: CallMetrics,
        outbound: OutboundAudio,
        control: CallControl,
        *,
        greeting: str = "",
        backend: str = "openai",
        reconnects: int = 1,
        on_model_failure: Callable[[str, str], Awaitable[str]] | None = None,
    ) -> None:
        self._open_session = open_session
        self._limits = limits
        self._record = record
        self._recorder = recorder
        self._metrics = metrics
        self._outbound = outbound
        self._control = control
        self._greeting = greeting
        self._backend = backend
        self._reconnects_left = reconnects
        self._on_model_failure = on_model_failure
        self._sessions = 0

    async def run(
        self,
        call_sid: str,
        run_session: Callable[[RealtimeSession], Awaitable[str]],
        set_reason: Callable[[str], None],
    ) -> None:
        """Run sessions with ``run_session`` (returns why the session ended) until the call
        ends; ``set_reason`` gets the call's end reason before any apology is said."""
        session = await self._connect(call_sid)
        while True:
            if session is None:
                reason = "model_connect_failed"
            else:
                try:
                    reason = await run_session(session)
                finally:
                    await self._close(session)
            if reason not in MODEL_FAILURES:
                set_reason(reason)
                if reason in POLITE_ENDINGS:
                    await self.apologise(call_sid, reason)
                return
            if self._reconnects_left > 0:
                self._reconnects_left -= 1
                self._record("model.reconnecting", after=reason)
                session = await self._connect(call_sid)
                if session is not None:
                    await self._replay(session)
                    continue
                reason = "model_connect_failed"
            set_reason(reason)
            await self.apologise(call_sid, reason)
            return

    async def _connect(self, call_sid: str) -> RealtimeSession | None:
        """Open and connect a session (a fresh tracker each time); None if it failed."""
        self._record("model.connecting", backend=self._backend)
        tracker = self._outbound.new_session()
        t0 = time.monotonic()
        try:
            context = CallContext(call_sid=call_sid, control=self._control)
            session = await self._open_session(tracker, context)
            await asyncio.wait_for(session.enter(), self._limits.connect_timeout)
        except Exception as exc:
            self._record("model.connect_failed", error=describe_error(exc))
            logger.warning("call %s: model connect failed: %s", call_sid, describe_error(exc))
            if self._reconnects_left > 0 and self._sessions == 0:
                self._reconnects_left -= 1  # a failed first connect gets its one retry here
                self._record("model.reconnecting", after="model_connect_failed")
                return await self._connect(call_sid)
            return None
        self._sessions += 1
        self._metrics.session_started()
        self._record("model.connected", connect_ms=round((time.monotonic() - t0) * 1000, 1))
        if self._sessions == 1 and self._greeting:
            await greet(session, self._greeting)
            self._record("greeting.requested", text=self._greeting)
        return session

    async def _replay(self, session: RealtimeSession) -> None:
        """Give a new session the conversation so far, and let the agent pick up the thread."""
        items = self._recorder.conversation[-MAX_REPLAY_ITEMS:]
        for role, text in items:
            content_type = "input_text" if role == "user" else "output_text"
            item = {
                "type": "message",
                "role": role,
                "content": [{"type": content_type, "text": text}],
            }
            await session.model.send_event(
                RealtimeModelSendRawMessage(
                    message={"type": "conversation.item.create", "other_data": {"item": item}}
                )
            )
        await create_response(session, RESUME_INSTRUCTIONS)
        self._record("model.replayed", items=len(items))

    async def apologise(self, call_sid: str, reason: str) -> None:
        """We are ending the call (model gone, shutdown, time limit): tell the caller if we
        can; the stream is closed after."""
        if self._on_model_failure is None:
            self._record("call.apology", via="none (stream closed)", reason=reason)
            return
        try:
            via = await asyncio.wait_for(
                self._on_model_failure(call_sid, reason), self._limits.close_timeout
            )
            self._record("call.apology", via=via, reason=reason)
        except Exception as exc:
            self._record("call.apology", via="failed", reason=reason, error=describe_error(exc))

    async def _close(self, session: RealtimeSession) -> None:
        try:
            await asyncio.wait_for(session.close(), self._limits.close_timeout)
        except TimeoutError:
            self._record("model.close_timeout", timeout_s=self._limits.close_timeout)
        except Exception as exc:
            self._record("model.close_error", error=describe_error(exc))
