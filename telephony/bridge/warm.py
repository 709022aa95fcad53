"""A warm transfer's carrier steps on a Media Streams call (a
:class:`~telephony.control.warm.WarmCarrier`).

- **Dial**: the briefing is stored where any instance finds it, then Twilio's REST API places
  the person's call from ``TWILIO_FROM_NUMBER`` (ringing at most ``TRANSFER_RING_TIMEOUT``),
  with the transfer's key in its webhook, status and AMD callback URLs (signed by Twilio with
  them). Its webhook answers ``<Connect><Stream>`` like any call's, so the briefing agent runs
  through the bridge on whichever instance takes it.
- **Hold**: the caller hears the hold loop (:class:`~.hold.ToolFiller`) and the model hears
  silence (the call's caller-audio route is ``muted``: :class:`~.routing.CallerAudioRoute` on
  the Realtime backend, :class:`CallerHold` on GPT-Live).
- **Join**: a Twilio Conference named ``warm-<caller's CallSid>``: both live calls are moved
  into it by a REST update of their TwiML (which ends their streams), the person's first. A
  conference rather than a ``<Dial>`` from the caller's leg, because the person is on a live
  call of their own already: a ``<Dial>`` would ring them a second time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from ..agent.briefing import Briefing
from ..observability.call_log import describe_error
from ..twilio.dial import AMD_PATH, STATUS_EVENTS
from ..twilio.rest import TwilioCalls
from ..twilio.twiml import conference_twiml
from .hold import ToolFiller

__all__ = ["CallerHold", "Mutable", "TwilioWarmCarrier", "conference_name"]


class Mutable(Protocol):
    """A call's caller audio on its way to the model: silence instead while ``muted``."""

    muted: bool


@dataclass
class CallerHold:
    """A :class:`Mutable` that is only the flag (GPT-Live's bridge reads it per frame: the
    model hears silence, and its audio is not played, while ``muted``)."""

    muted: bool = False


def conference_name(call_sid: str) -> str:
    """The conference a warm transfer joins the caller ``call_sid`` and the person in."""
    return f"warm-{call_sid}"


class TwilioWarmCarrier:
    """Warm-transfer steps for one Media Streams call.

    Args:
        twilio: REST access.
        from_number: the caller ID of the person's call (``TWILIO_FROM_NUMBER``).
        base_url: our public base URL (``PUBLIC_URL``), for the person's leg's webhooks.
        ring_timeout: seconds the person's phone rings at most.
        store: keeps a briefing where any instance finds it (the fleet state).
        call_sid: the caller's CallSid (known from ``start``).
        filler: the call's hold sound; None: the caller hears silence.
        route: the call's caller audio on its way to the model (muted on hold).
        record: writes a call-log record.
    """

    def __init__(
        self,
        twilio: TwilioCalls,
        from_number: str,
        base_url: str,
        ring_timeout: int,
        store: Callable[[Briefing], Awaitable[None]],
        call_sid: Callable[[], str | None],
        filler: ToolFiller | None,
        route: Mutable,
        record: Callable[..., Any],
    ) -> None:
        self._twilio = twilio
        self._from = from_number
        self._base = base_url.rstrip("/")
        self._ring_timeout = ring_timeout
        self._store = store
        self._call_sid = call_sid
        self._filler = filler
        self._route = route
        self._record = record

    async def dial(self, briefing: Briefing, target: str) -> str:
        """Store ``briefing``, then ring ``target``; returns the person's CallSid.

        Raises:
            twilio.base.exceptions.TwilioRestException: Twilio refused the call.
            telephony.fleet.FleetUnavailable: the briefing could not be stored.
        """
        await self._store(briefing)
        query = "?" + urlencode({"transfer": briefing.key})
        return await self._twilio.create_call(
            to=target,
            from_=self._from,
            url=f"{self._base}/incoming-call{query}",
            status_callback=f"{self._base}/call-status{query}",
            status_events=STATUS_EVENTS,
            amd_callback=f"{self._base}{AMD_PATH}{query}",
            timeout_s=self._ring_timeout,
        )

    async def hold(self, on: bool) -> None:
        """Hold (``on``): the hold loop plays and the model hears silence; off: neither."""
        self._route.muted = on
        if self._filler is None:
            return
        if on:
            self._filler.hold("transfer")
        else:
            await self._filler.release()

    async def join(self, leg: str, leaving: Callable[[], None]) -> str:
        """Move the person's ``leg``, then the caller (``leaving`` called just before), into
        the conference; returns ``via``.

        Raises:
            RuntimeError: a call had ended.
            twilio.base.exceptions.TwilioRestException: Twilio refused an update.
        """
        caller = self._call_sid()
        if caller is None:
            raise RuntimeError("the caller's call has no CallSid")
        twiml = conference_twiml(conference_name(caller))
        if not await self._twilio.update_twiml(leg, twiml):
            raise RuntimeError("the person's call had ended")
        leaving()
        if not await self._twilio.update_twiml(caller, twiml):
            raise RuntimeError("the caller's call had ended")
        return f"twilio_conference {conference_name(caller)}"

    async def end_leg(self, leg: str) -> str:
        """Hang up the person's ``leg`` (``Status=completed``); returns how. Never raises."""
        try:
            done = await self._twilio.hang_up(leg)
        except Exception as exc:
            self._record("twilio.error", action="end transfer leg", error=describe_error(exc))
            return "twilio_rest failed"
        return "twilio_rest" if done else "twilio_rest (call already ended)"
