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
``transfer.refused``, ``call.transfer`` (``destination``, ``mode`` and the carrier's fields);
a warm transfer's records are :mod:`.warm`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..agent.briefing import Briefing, briefing_summary
from ..agent.sessions import OPERATOR_ENDS, announce_transfer, create_response, say_goodbye
from ..agent.tools import transfer_refusal
from ..config import CallFeatures
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder
from .warm import WarmCarrier, WarmTransfer, declined_note

__all__ = ["HANG_UP_NOTE", "CallController", "Carrier"]

FINISH_S = 10.0  # a hang-up or transfer under way when the stream ends: how long it may finish
HANG_UP_NOTE = "The call will end as soon as your goodbye has played. Say a short goodbye now."
ANNOUNCE_NOTE = (
    "In one short sentence, tell the caller you are transferring them to {} now. The transfer "
    "happens as soon as you have said it."
)
WARM_NOTE = (
    "In one short sentence, tell the caller you are connecting them to {} and that they will "
    "hear hold music for a moment. Say nothing else; you will be told whether {} takes the call."
)
HANDOFF_NOTE = (
    "In one short sentence, tell the caller you are connecting them to {} and that they will "
    "hear hold music for a moment. Say nothing else."
)
# the agent of a call handed off (from the SIP path) knows only the briefing's summary
HANDOFF_CONTEXT = (
    "This call was moved to this line for the transfer; the caller had asked about: {}. "
)


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
        self.warm_carrier: WarmCarrier | None = None  # warm transfers possible on this call
        self.warm: WarmTransfer | None = None  # the warm transfer under way, or the last
        # a warm transfer by handing the call to a Twilio call that does it (the SIP path's):
        # stores the briefing and refers the call; returns call.transfer's fields, or a note
        self.warm_handoff: Callable[[Briefing], Awaitable[dict[str, Any] | str]] | None = None
        self.handoff: Briefing | None = None  # this call continues a handed-off transfer
        self.call_id = ""  # this call's id (the briefing names it)
        self.caller_number = ""  # as a briefing says it
        self._leaving: str | None = None  # why, once call control is taking the call away
        # the model speaks only after a tool's output (GPT-Live): an agent's cold transfer
        # waits for the announcement that follows it, as an operator's does
        self.announce_transfers = False
        # GPT-Live's transcript, ``(role, text)`` turns: the caller's words for a briefing
        # come from it where the recorder keeps no conversation
        self.transcript: list[tuple[str, str]] | None = None

    @property
    def record(self) -> Callable[..., Any]:
        """Writes a record to this call's log."""
        return self._record

    @property
    def stop_reason(self) -> str:
        """Why the call ended when the carrier ends its stream: what call control was doing
        then (a hang-up's reason, ``transferred``), else the caller hung up."""
        return self._leaving or "caller_hangup"

    @property
    def busy(self) -> bool:
        """A hang-up or a transfer is on its way."""
        return any(t is not None and not t.done() for t in (self._hangup_task, self._transfer_task))

    @property
    def ending(self) -> bool:
        """A hang-up or a transfer was asked for (it may be over)."""
        return self._hangup_task is not None or self._transfer_task is not None

    async def stop(self) -> None:
        """Cancel a pending hang-up or transfer (the call is over); a hang-up or transfer
        the carrier is carrying out (the stream ended because of it, maybe before the
        carrier's answer came) is let finish, for at most ``FINISH_S``, so that its record
        (``call.hangup``, ``call.transfer``) is written."""
        for task in (self._hangup_task, self._transfer_task):
            if task is not None and not task.done():
                if self._leaving is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(asyncio.shield(task), FINISH_S)
                    if task.done():
                        continue
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def leaving(self, why: str | None) -> None:
        """Call control is taking the call away (``why``, such as ``transferred``): a
        ``stop`` from the carrier is that, not the caller hanging up; None: no longer."""
        self._leaving = why

    # ------------------------------------------------------------------ the agent's tools

    async def hang_up(self, reason: str) -> str:
        """``end_call``: hang up once the goodbye the agent says next has played."""
        if self._hangup_task is not None:
            return "The call is already ending."
        self._record("hangup.requested", reason=reason)
        self.hang_up_after("agent_hangup", self._recorder.responses_started)
        return HANG_UP_NOTE

    async def transfer(self, destination: str, summary: str = "") -> str:
        """``transfer_call``: hand the caller to an allowed destination name (warm, with
        ``summary`` in the briefing, when ``TRANSFER_WARM`` names it and this call can)."""
        target = self._features.transfer_targets.get(destination)
        if target is None:
            self._record("transfer.refused", destination=str(destination)[:80])
            return transfer_refusal(self._features.transfer_targets, destination)
        if self._warm_possible(destination):
            return self._start_warm(destination, target, summary, by="agent")
        if not self.announce_transfers:
            return await self._cold(destination, target, summary)
        self._record("transfer.requested", destination=destination, by="agent")
        started_before = self._recorder.responses_started

        async def after_announcement() -> None:
            await self.carrier.heard(started_before, self._features.hangup_grace)
            await self._cold(destination, target, summary)

        self._transfer_task = asyncio.create_task(after_announcement())
        return ANNOUNCE_NOTE.format(destination)

    async def _cold(self, destination: str, target: str, summary: str) -> str:
        """The carrier transfers the call to ``target`` now; returns a note for the model."""
        self._leaving = "transferred"
        outcome = await self.carrier.transfer(destination, target)
        if isinstance(outcome, str):
            self._leaving = None
            return outcome
        said = {"summary": summary[:400]} if summary else {}
        self._record("call.transfer", destination=destination, mode="cold", **said, **outcome)
        self._end("transferred")
        return f"Transferring the caller to {destination} now."

    def _warm_possible(self, destination: str) -> bool:
        return destination in self._features.warm_targets and (
            self.warm_carrier is not None or self.warm_handoff is not None
        )

    def _start_warm(self, destination: str, target: str, summary: str, by: str) -> str:
        """A warm transfer by this call's own carrier, else by handing the call off."""
        if self.warm_carrier is not None:
            return self.transfer_warm(destination, target, summary, by)
        return self.hand_off_warm(destination, summary, by)

    def _briefing(self, destination: str, summary: str) -> Briefing:
        if self.transcript is not None:
            turns = [text for role, text in self.transcript if role == "user"]
        else:
            turns = [t.text for t in self._recorder.conversation if t.role == "user"]
        return Briefing(
            key=secrets.token_urlsafe(18),
            caller_sid=self.call_id,
            destination=destination,
            summary=briefing_summary(summary, turns[-3:]),
            caller=self.caller_number,
        )

    def transfer_warm(self, destination: str, target: str, summary: str, by: str) -> str:
        """Start a warm transfer (see :mod:`.warm`) once what the agent says next has played;
        returns a note for the model."""
        if self.busy:
            return "A transfer or a hang-up is already under way."
        briefing = self._briefing(destination, summary)
        self._record("transfer.requested", destination=destination, mode="warm", by=by)
        self._record("transfer.briefing", leg="caller", summary=briefing.summary, key=briefing.key)
        self._run_warm(briefing, target, self._recorder.responses_started)
        return WARM_NOTE.format(destination, destination)

    def start_handoff(self) -> None:
        """This call continues a warm transfer handed off to it (:attr:`handoff`, from the
        SIP path, where the agent has told the caller already): the caller holds at once while
        the person is dialled and briefed. Call it once the call's log is open (its records
        follow the stream's start). Nothing when there is none or this call cannot transfer
        warm."""
        handed, target = self.handoff, None
        if handed is not None:
            target = self._features.transfer_targets.get(handed.destination)
        if handed is None or target is None or self.warm_carrier is None:
            return
        briefing = handed.model_copy(
            update={"key": secrets.token_urlsafe(18), "caller_sid": self.call_id}
        )
        destination, key = handed.destination, briefing.key
        self._record("transfer.requested", destination=destination, mode="warm", by="handoff")
        self._record(
            "transfer.briefing",
            leg="caller",
            summary=briefing.summary,
            key=key,
            handed_off_by=handed.caller_sid,
        )
        self._run_warm(briefing, target, None, HANDOFF_CONTEXT.format(handed.summary))

    def _run_warm(
        self, briefing: Briefing, target: str, started_before: int | None, context: str = ""
    ) -> None:
        """Run one warm transfer in :attr:`_transfer_task`: once the responses begun after
        ``started_before`` have played (None: at once), dial and hold; then leave the call to
        the person, or tell the agent (``context`` first) that it did not happen."""
        assert self.warm_carrier is not None
        destination = briefing.destination
        warm = WarmTransfer(
            briefing,
            target,
            self.warm_carrier,
            self._record,
            self._features.decide_timeout,
            leaving=lambda: self.leaving("transferred"),
        )
        self.warm = warm

        async def connect() -> None:
            try:
                if started_before is not None:
                    await self.carrier.heard(started_before, self._features.hangup_grace)
            except asyncio.CancelledError:  # the caller hung up before the dial
                warm.outcome = "cancelled"
                self._record("transfer.cancelled", why="caller_hangup", person_leg=None)
                raise
            outcome = await warm.run()
            if outcome == "accepted":
                self._record(
                    "call.transfer", destination=destination, mode="warm", person_leg=warm.leg
                )
                self._end("transferred")
                return
            self._transfer_task = self._leaving = None  # the call goes on
            offer = self._features.transfer_offer
            note = context + declined_note(destination, outcome, warm.why, offer)
            await self.ask(lambda session: create_response(session, note))

        self._transfer_task = asyncio.create_task(connect(), name=f"warm:{self.call_id}")

    def hand_off_warm(self, destination: str, summary: str, by: str) -> str:
        """A warm transfer by handing the call off (:attr:`warm_handoff`) once what the agent
        says next has played: the call is referred to a Twilio call that holds, dials and
        briefs (:meth:`start_handoff` there); this call ends ``transferred``. Returns a note
        for the model."""
        if self.busy:
            return "A transfer or a hang-up is already under way."
        assert self.warm_handoff is not None
        hand_off = self.warm_handoff
        briefing = self._briefing(destination, summary)
        self._record("transfer.requested", destination=destination, mode="warm", by=by)
        self._record("transfer.briefing", leg="caller", summary=briefing.summary, key=briefing.key)
        started_before = self._recorder.responses_started

        async def refer() -> None:
            await self.carrier.heard(started_before, self._features.hangup_grace)
            self._leaving = "transferred"
            outcome = await hand_off(briefing)
            if isinstance(outcome, str):  # the call goes on
                self._transfer_task = self._leaving = None
                await self.ask(lambda session: create_response(session, outcome))
                return
            self._record("call.transfer", destination=destination, mode="warm", **outcome)
            self._end("transferred")

        self._transfer_task = asyncio.create_task(refer(), name=f"handoff:{self.call_id}")
        return HANDOFF_NOTE.format(destination)

    def warm_decided(self, key: str, outcome: str, why: str, leg: str | None) -> bool:
        """A warm transfer's decision reached this call (from any instance); False when it
        is not this call's transfer under way (then it changes nothing)."""
        warm = self.warm
        return warm is not None and warm.briefing.key == key and warm.decide(outcome, why, leg)

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
        if self._warm_possible(destination):
            target = self._features.transfer_targets[destination]
            note = self._start_warm(destination, target, "", by="operator")
            await self.ask(lambda session: create_response(session, note))
            return "warm transfer: the agent tells the caller, then the person is briefed"
        self._record("transfer.requested", destination=destination, by="operator")
        started_before = self._recorder.responses_started

        async def announce_then_transfer() -> None:
            await self.carrier.heard(started_before, self._features.hangup_grace)
            await self._cold(destination, self._features.transfer_targets[destination], "")

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
            self._leaving = reason
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
