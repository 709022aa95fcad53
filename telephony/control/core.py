"""Call control as both call paths do it: say something, wait until the caller heard it, then
act through the carrier.

The agent's ``end_call`` and ``transfer_call`` tools (:class:`telephony.agent.tools.CallControl`)
and an operator's hang-up or transfer (``POST /calls/{sid}/hangup|transfer`` on any instance)
all come here. What the carrier does is a :class:`Carrier`: on a Media Streams call, Twilio's
REST API, the goodbye heard once its marks echoed (:mod:`telephony.bridge.control`); on a SIP
call, the OpenAI Calls API, the goodbye heard at ``output_audio_buffer.stopped``
(:mod:`telephony.sip.call`).

Records: ``hangup.requested`` (``reason``, and ``by`` for an operator or a watchdog),
``call.hangup`` (``via``, ``waited_ms``, ``waited_for``), ``transfer.requested``,
``transfer.refused``, ``call.transfer`` (``destination`` and the carrier's fields).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..agent.sessions import OPERATOR_ENDS, announce_transfer, say_goodbye
from ..agent.tools import transfer_refusal
from ..config import CallFeatures
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder

__all__ = ["HANG_UP_NOTE", "CallController", "Carrier"]

HANG_UP_NOTE = "The call will end as soon as your goodbye has played. Say a short goodbye now."


class Carrier(Protocol):
    """The carrier-specific steps of call control on one call."""

    async def heard(self, started_before: int, grace_s: float) -> str:
        """Wait until the caller has heard the responses begun after ``started_before``
        responses, at most ``grace_s`` seconds; returns what ended the wait (``waited_for``
        of ``call.hangup``)."""
        ...

    async def hang_up(self) -> str:
        """Hang the call up; returns how (``via`` of ``call.hangup``). Never raises."""
        ...

    async def transfer(self, destination: str, target: str) -> dict[str, Any] | str:
        """Hand the call to ``target`` (+E.164 or ``sip:``); returns the fields of
        ``call.transfer``, or, when it could not, a note for the model (the carrier logged
        why). Never raises."""
        ...


class CallController:
    """Hang-up and transfer for one call, from the agent's tools or an operator.

    Args:
        features: hang-up grace and the transfer allow-list.
        carrier: the carrier's steps.
        record: writes a call-log record.
        recorder: the session's recorder (responses started: which response is the goodbye).
        end: asks the call to end with a reason.
    """

    def __init__(
        self,
        features: CallFeatures,
        carrier: Carrier,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        end: Callable[[str], None],
    ) -> None:
        self._features = features
        self.carrier = carrier
        self._record = record
        self._recorder = recorder
        self._end = end
        self.session: Any = None  # the model session in use now (a RealtimeSession)
        self._hangup_task: asyncio.Task[None] | None = None
        self._transfer_task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A hang-up or a transfer is on its way."""
        return any(t is not None and not t.done() for t in (self._hangup_task, self._transfer_task))

    @property
    def ending(self) -> bool:
        """A hang-up or a transfer was asked for (it may be over)."""
        return self._hangup_task is not None or self._transfer_task is not None

    async def stop(self) -> None:
        """Cancel a pending hang-up or transfer (the call is over)."""
        for task in (self._hangup_task, self._transfer_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # ------------------------------------------------------------------ the agent's tools

    async def hang_up(self, reason: str) -> str:
        """``end_call``: hang up once the goodbye the agent says next has played."""
        if self._hangup_task is not None:
            return "The call is already ending."
        self._record("hangup.requested", reason=reason)
        self.hang_up_after("agent_hangup", self._recorder.responses_started)
        return HANG_UP_NOTE

    async def transfer(self, destination: str) -> str:
        """``transfer_call``: hand the caller to an allowed destination name."""
        target = self._features.transfer_targets.get(destination)
        if target is None:
            self._record("transfer.refused", destination=str(destination)[:80])
            return transfer_refusal(self._features.transfer_targets, destination)
        outcome = await self.carrier.transfer(destination, target)
        if isinstance(outcome, str):
            return outcome
        self._record("call.transfer", destination=destination, **outcome)
        self._end("transferred")
        return f"Transferring the caller to {destination} now."

    # ------------------------------------------------------------------ an operator

    async def operator_hang_up(self, reason: str) -> str:
        """An operator ends the call (from any instance): goodbye, then hang up."""
        if self._hangup_task is not None:
            return "already ending"
        await self.end_politely("operator_hangup", OPERATOR_ENDS, by="operator", asked=reason)
        return "hanging up after the agent's goodbye"

    async def operator_transfer(self, destination: str) -> str:
        """An operator transfers the call: the agent says so, then the carrier transfers it
        to ``destination`` (an allowed name)."""
        if destination not in self._features.transfer_targets:
            return transfer_refusal(self._features.transfer_targets, destination)
        if self.ending:
            return "already ending"
        self._record("transfer.requested", destination=destination, by="operator")
        started_before = self._recorder.responses_started

        async def announce_then_transfer() -> None:
            await self.carrier.heard(started_before, self._features.hangup_grace)
            await self.transfer(destination)

        self._transfer_task = asyncio.create_task(announce_then_transfer())
        await self.ask(lambda session: announce_transfer(session, destination))
        return "transferring after the agent's announcement"

    # ------------------------------------------------------------------ shared steps

    async def end_politely(self, reason: str, why: str, by: str, **fields: Any) -> None:
        """The agent says a short goodbye (``why`` tells it why), then the call hangs up:
        an operator's request, or a time limit."""
        self._record("hangup.requested", reason=reason, by=by, **fields)
        self.hang_up_after(reason, self._recorder.responses_started)
        await self.ask(lambda session: say_goodbye(session, why))

    def hang_up_after(self, reason: str, started_before: int) -> None:
        """Hang up once the caller heard a response begun after ``started_before`` (the
        goodbye), then end the call with ``reason``."""

        async def after_goodbye() -> None:
            t0 = time.monotonic()
            waited_for = await self.carrier.heard(started_before, self._features.hangup_grace)
            waited_ms = round((time.monotonic() - t0) * 1000)
            via = await self.carrier.hang_up()
            self._record("call.hangup", via=via, waited_ms=waited_ms, waited_for=waited_for)
            self._end(reason)

        self._hangup_task = asyncio.create_task(after_goodbye())

    def hang_up_with(self, job: Awaitable[None]) -> None:
        """Run ``job`` as this call's hang-up (a path's own way to end it, such as leaving a
        voicemail first)."""
        self._hangup_task = asyncio.ensure_future(job)

    async def ask(self, say: Callable[[Any], Awaitable[None]]) -> None:
        """Ask the session for a response (a goodbye, an announcement); errors are logged."""
        if self.session is None:
            return
        try:
            await say(self.session)
        except Exception as exc:
            self._record("model.error", where="operator", error=describe_error(exc))
