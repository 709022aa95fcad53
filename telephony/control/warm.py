"""Warm (attended) transfer, the caller's side, as every carrier does it.

1. The agent has told the caller they are being connected (the core waits until it played).
2. The caller hears the hold sound and the model hears silence; the person is dialled on a
   second leg, whose own session briefs them (:mod:`telephony.agent.briefing`).
3. A decision comes back, from whichever instance has the person's leg or a carrier callback:
   ``accepted``, or one of :data:`DECLINED` (``declined`` by voice or keypad, ``no_answer``,
   ``busy``, ``failed``, ``voicemail``, ``hung_up``); none within ``TRANSFER_DECIDE_TIMEOUT``
   is ``timeout``.
4. Accepted: the carrier joins caller and person (on Twilio, a conference) and the agent
   leaves both legs. Otherwise the person's leg is ended, the hold stops, and the agent tells
   the caller and offers what it was told to offer (``TRANSFER_OFFER``).

Records on the caller's leg: ``transfer.started`` (``destination``, ``person_leg``: the person's
CallSid), then ``transfer.accepted`` (``via``), ``transfer.declined`` (``why``) or
``transfer.timeout``; ``transfer.cancelled`` when the caller hangs up first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..agent.briefing import Briefing
from ..observability.call_log import describe_error

__all__ = ["DECLINED", "OUTCOMES", "WarmCarrier", "WarmTransfer", "declined_note"]

DECLINED = frozenset({"declined", "no_answer", "busy", "failed", "voicemail", "hung_up"})
OUTCOMES = frozenset({"accepted", "timeout", "cancelled", *DECLINED})
# the person's call never connected, or its agent says goodbye and hangs up (a decline)
LEG_ENDS_ITSELF = frozenset({"declined", "no_answer", "busy", "failed"})
WHY = {
    "declined": "could not take the call",
    "no_answer": "did not answer",
    "busy": "was busy",
    "failed": "could not be reached",
    "voicemail": "did not answer (their voicemail picked up)",
    "hung_up": "hung up before taking the call",
    "timeout": "did not take the call in time",
}


class WarmCarrier(Protocol):
    """The carrier steps of a warm transfer on one call."""

    async def dial(self, briefing: Briefing, target: str) -> str:
        """Store ``briefing`` where the person's leg finds it and ring ``target``; returns
        the person's call id. Raises on failure."""
        ...

    async def hold(self, on: bool) -> None:
        """The caller hears the hold sound and the model silence (``on``), or neither."""
        ...

    async def join(self, leg: str, leaving: Callable[[], None]) -> str:
        """Join the caller and the person's ``leg``, calling ``leaving`` just before the
        caller's own call is moved (its stream ends then); returns how (``via``). Raises on
        failure."""
        ...

    async def end_leg(self, leg: str) -> str:
        """Hang up the person's ``leg``; returns how. Never raises."""
        ...


def declined_note(destination: str, outcome: str, why: str, offer: str) -> str:
    """Instructions for the agent's next response after a warm transfer did not happen."""
    # only a person's own words are for the caller (not "call status busy", "keypad", ...)
    said = (
        f' They said: "{why}".'
        if outcome == "declined" and why not in ("", "voice", "keypad")
        else ""
    )
    offer_text = f" Offer {offer}." if offer else ""
    return (
        f"The transfer did not happen: {destination} {WHY.get(outcome, 'could not take the call')}."
        f"{said} The caller has been on hold; tell them so in one short sentence.{offer_text}"
    )


class WarmTransfer:
    """One warm transfer of one call: :meth:`run` it once; :meth:`decide` from anywhere.

    Args:
        briefing: what the person is told (its ``key`` names this transfer).
        target: the person's number (+E.164).
        carrier: the carrier's steps.
        record: writes a caller-leg call-log record.
        decide_timeout: seconds from dialling to the decision, at most.
        leaving: called just before the caller's call is moved into the conference.
    """

    def __init__(
        self,
        briefing: Briefing,
        target: str,
        carrier: WarmCarrier,
        record: Callable[..., Any],
        decide_timeout: float,
        leaving: Callable[[], None] = lambda: None,
    ) -> None:
        self.briefing = briefing
        self._leaving = leaving
        self._dialing: asyncio.Future[str] | None = None
        self._target = target
        self._carrier = carrier
        self._record = record
        self._decide_timeout = decide_timeout
        self._decision: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.leg: str | None = None
        self.outcome: str | None = None
        self.why = ""

    def decide(self, outcome: str, why: str = "", leg: str | None = None) -> bool:
        """The decision (one of :data:`OUTCOMES`); the first one counts. False when this
        transfer had one already or ``leg`` is not the person's leg."""
        if outcome not in OUTCOMES or self._decision.done():
            return False
        if leg and self.leg and leg != self.leg:
            return False
        self._decision.set_result((outcome, why[:120]))
        return True

    async def run(self) -> str:
        """Dial, hold, wait for the decision, then join or give the caller back; returns
        the outcome. Cancelled (the caller hung up): ends the person's leg, ``cancelled``."""
        b = self.briefing
        t0 = time.monotonic()
        try:
            await self._carrier.hold(True)
            self._dialing = asyncio.ensure_future(self._carrier.dial(b, self._target))
            try:  # shielded: a caller who hangs up meanwhile has the placed call ended
                self.leg = await asyncio.shield(self._dialing)
            except Exception as exc:
                self._record("transfer.error", step="dial", error=describe_error(exc))
                self.decide("failed", "dial")
            else:
                leg = self.leg
                self._record(
                    "transfer.started", destination=b.destination, person_leg=leg, key=b.key
                )
            try:
                async with asyncio.timeout(self._decide_timeout):
                    outcome, why = await asyncio.shield(self._decision)
            except TimeoutError:
                self.decide("timeout")
                outcome, why = self._decision.result()
        except asyncio.CancelledError:
            await self._cancelled()
            raise
        self.outcome, self.why = outcome, why
        waited_ms = round((time.monotonic() - t0) * 1000)
        if outcome == "accepted" and self.leg is not None:
            try:
                via = await self._carrier.join(self.leg, self._leaving)
            except asyncio.CancelledError:  # the caller hung up as they were moved
                await self._cancelled()
                raise
            except Exception as exc:
                self._record("transfer.error", step="join", error=describe_error(exc))
                self.outcome, outcome, why = "failed", "failed", "join"
                await self._end_leg("join failed")  # they may be in the conference alone
            else:
                self._record("transfer.accepted", person_leg=self.leg, via=via, waited_ms=waited_ms)
                return outcome
        await self._end_leg(outcome)
        await self._carrier.hold(False)
        event = "transfer.timeout" if outcome == "timeout" else "transfer.declined"
        self._record(event, outcome=outcome, why=why, person_leg=self.leg, waited_ms=waited_ms)
        return outcome

    async def _cancelled(self) -> None:
        """The caller hung up: the person's call (placed, or being placed) is ended."""
        self.decide("cancelled", "caller_hangup")
        self.outcome = "cancelled"
        if self.leg is None and self._dialing is not None:
            with contextlib.suppress(Exception):
                self.leg = await self._dialing
        self._record("transfer.cancelled", why="caller_hangup", person_leg=self.leg)
        await self._end_leg("cancelled")

    async def _end_leg(self, outcome: str) -> None:
        if self.leg is not None and outcome not in LEG_ENDS_ITSELF:
            via = await self._carrier.end_leg(self.leg)
            self._record("transfer.leg_ended", person_leg=self.leg, via=via)
