"""Warm transfers across the fleet: the briefing in the fleet state, the person's leg as it
reaches any instance, and every decision on its way to the caller's owner.

- The caller's leg (at ``start``): its call control may transfer warm (``TRANSFER_WARM``) when
  Twilio REST, ``TWILIO_FROM_NUMBER`` and ``PUBLIC_URL`` are set
  (:class:`~telephony.bridge.warm.TwilioWarmCarrier`).
- The person's leg: its webhook (``/incoming-call?transfer=<key>``) answers a stream only for a
  briefing it finds; at ``start`` the leg's call control takes the briefing (its agent briefs,
  keys 1 and 2 decide).
- Decisions: the person's (voice, keypad, hanging up), the person's call status (``no-answer``,
  ``busy``, ``failed``, ``completed``) and answering machine detection (a machine) each go to
  the caller's owner (:meth:`telephony.remote_control.RemoteControl.warm`); the first counts.
- The SIP path (``SIP_TRANSFER_DOMAIN``): OpenAI's SIP calls can only be referred, so a warm
  transfer there is handed off. The briefing is stored under a second key and the call is
  referred to ``sip:warm-<key>@<SIP_TRANSFER_DOMAIN>``, a Twilio SIP Domain whose Voice URL is
  our ``/incoming-call``: the caller comes back as a Twilio call, which takes the handoff at
  ``start`` and runs the warm transfer as every Media Streams call does (hold at once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from .admission import Refused
from .agent.briefing import Briefing
from .bridge.stream import StreamCall
from .bridge.warm import TwilioWarmCarrier
from .config import CallFeatures, Settings
from .fleet import FleetState, FleetUnavailable
from .observability.call_log import CallLogs
from .remote_control import RemoteControl
from .twilio.dial import MACHINE
from .twilio.media_stream import Start
from .twilio.rest import TwilioCalls

__all__ = ["BRIEFING_KEY", "HANDOFF_KEY", "STATUS_OUTCOMES", "TransferLegs", "handoff_key"]

logger = logging.getLogger("telephony.transfers")

BRIEFING_KEY = "transfer:{}"  # fleet state: a warm transfer's briefing, by its key
HANDOFF_KEY = "handoff:{}"  # fleet state: a SIP call's warm transfer, until Twilio's call takes it
HANDOFF_KEEP_S = 120.0  # the refer, Twilio's INVITE and the webhook take seconds
HANDOFF_USER = re.compile(r"sip:warm-([A-Za-z0-9_-]{16,64})@([A-Za-z0-9.-]+)(?:[;:>].*)?")
DECIDED = "decided"  # stored in its place once the caller's owner took a decision
KEEP_S = 120.0  # a briefing outlives ring and decision by this much
# the person's call status, as a decision (``canceled``: we hung it up ourselves)
STATUS_OUTCOMES = {
    "no-answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "completed": "hung_up",
}


def handoff_key(to: str | None, domain: str | None) -> str | None:
    """The handoff key in a Twilio webhook's ``To`` (``sip:warm-<key>@<domain>``, the URI a
    SIP call was referred to); None when ``To`` is not one for ``domain``."""
    if not to or not domain:
        return None
    match = HANDOFF_USER.fullmatch(to.strip())
    if match is None or match.group(2).lower() != domain:
        return None
    return match.group(1)


class TransferLegs:
    """Warm transfers for one service.

    Args:
        settings: ``TWILIO_FROM_NUMBER``, ``PUBLIC_URL``.
        features: ``TRANSFER_WARM`` names, ring and decision timeouts.
        rest: Twilio REST access; None: no warm transfer.
        state: the fleet state (briefings).
        control: reaches the caller's owner.
        logs: call logs (the person's leg's callbacks are logged there).
    """

    def __init__(
        self,
        settings: Settings,
        features: CallFeatures,
        rest: TwilioCalls | None,
        state: FleetState,
        control: RemoteControl,
        logs: CallLogs,
    ) -> None:
        self._settings = settings
        self._features = features
        self._rest = rest
        self._state = state
        self._control = control
        self._logs = logs

    @property
    def enabled(self) -> bool:
        """Whether calls may transfer warm: ``TRANSFER_WARM`` names a target, and Twilio
        REST, ``TWILIO_FROM_NUMBER`` and ``PUBLIC_URL`` are set."""
        s = self._settings
        return bool(
            self._features.warm_targets and self._rest and s.twilio_from_number and s.public_url
        )

    @property
    def hands_off(self) -> bool:
        """Whether a SIP call's warm transfer can be handed off to a Twilio call: warm
        transfers are on and ``SIP_TRANSFER_DOMAIN`` is set."""
        return self.enabled and bool(self._settings.sip_transfer_domain)

    async def hand_off(
        self, briefing: Briefing, refer: Callable[[str, str], Awaitable[dict[str, Any] | str]]
    ) -> dict[str, Any] | str:
        """A SIP call's warm transfer: store ``briefing`` for the Twilio call the refer
        brings back, then ``refer(destination, uri)`` the call to
        ``sip:warm-<key>@<SIP_TRANSFER_DOMAIN>``; returns the refer's ``call.transfer``
        fields (with ``handoff``), or a note for the model when it could not."""
        try:
            await self._state.remember(
                HANDOFF_KEY.format(briefing.key), briefing.model_dump_json(), HANDOFF_KEEP_S
            )
        except FleetUnavailable:
            logger.warning("warm transfer: the fleet state is down; handoff not stored")
            return "The transfer failed; apologise and offer to help instead."
        uri = f"sip:warm-{briefing.key}@{self._settings.sip_transfer_domain}"
        outcome = await refer(briefing.destination, uri)
        return outcome if isinstance(outcome, str) else {**outcome, "handoff": briefing.key}

    async def find_handoff(self, key: str, take: bool = False) -> Briefing | None:
        """The handed-off transfer stored under ``key`` (``take``: and no longer there for
        another call); None when there is none (or the fleet state is down)."""
        try:
            raw = await self._state.recall(HANDOFF_KEY.format(key))
            if raw is None or raw == DECIDED:
                return None
            if take:
                await self._state.overwrite(HANDOFF_KEY.format(key), DECIDED)
            return Briefing.model_validate_json(raw)
        except FleetUnavailable:
            logger.warning("warm transfer: the fleet state is down; handoff not found")
        except ValidationError:
            logger.warning("warm transfer: a stored handoff does not fit; ignored")
        return None

    async def admit(self, start: Start, call: StreamCall) -> None:
        """At a stream's ``start``: a person's leg takes its briefing; a caller's leg may
        transfer warm, and one the webhook found a handoff for continues it (see
        :meth:`telephony.control.CallController.start_handoff`, once the stream started).

        Raises:
            Refused: a person's leg whose briefing is gone (expired, or never stored).
        """
        control = call.control
        control.call_id = start.call_sid
        control.caller_number = start.custom_parameters.get("From", "")
        key = start.custom_parameters.get("Transfer")
        if key:
            briefing = await self.find(key)
            if briefing is None:
                raise Refused("unknown warm transfer")
            control.brief(briefing, self.report)
            return
        if self.enabled:
            assert self._rest is not None and self._settings.public_url
            control.warm_carrier = TwilioWarmCarrier(
                self._rest,
                self._settings.twilio_from_number or "",
                self._settings.public_url,
                self._features.ring_timeout,
                self.store,
                lambda: call.call_sid,
                call.filler,
                call.route,
                control.record,
            )
            handoff = start.custom_parameters.get("Handoff")
            if handoff and 16 <= len(handoff) <= 64:
                control.handoff = await self.find_handoff(handoff, take=True)

    async def store(self, briefing: Briefing) -> None:
        """Keep ``briefing`` where every instance finds it, for the ring and the decision.

        Raises:
            FleetUnavailable: the fleet state is down.
        """
        ttl = self._features.ring_timeout + self._features.decide_timeout + KEEP_S
        await self._state.remember(
            BRIEFING_KEY.format(briefing.key), briefing.model_dump_json(), ttl
        )

    async def find(self, key: str) -> Briefing | None:
        """The briefing stored under ``key``; None when there is none (or it does not fit,
        or the fleet state is down)."""
        if not 16 <= len(key) <= 64:
            return None
        try:
            raw = await self._state.recall(BRIEFING_KEY.format(key))
        except FleetUnavailable:
            logger.warning("warm transfer: the fleet state is down; briefing not found")
            return None
        if raw is None or raw == DECIDED:
            return None
        try:
            return Briefing.model_validate_json(raw)
        except ValidationError:
            logger.warning("warm transfer: a stored briefing does not fit; ignored")
            return None

    async def report(self, briefing: Briefing, outcome: str, why: str, leg: str) -> bool:
        """A decision to the caller's owner; True when its transfer took it (later callbacks
        of the person's call then find no briefing)."""
        try:
            taken = await self._control.warm(briefing.caller_sid, briefing.key, outcome, why, leg)
            if taken:
                await self._state.overwrite(BRIEFING_KEY.format(briefing.key), DECIDED)
            return taken
        except Exception as exc:  # never fail a webhook or a call over it
            logger.warning(
                "warm transfer %s: decision %s not delivered: %s", briefing.key, outcome, exc
            )
            return False

    async def on_status(self, key: str, status: str, leg: str) -> None:
        """The person's call status: a final one decides, if nothing did before."""
        outcome = STATUS_OUTCOMES.get(status)
        briefing = await self.find(key) if outcome else None
        if briefing is not None and outcome is not None:
            await self.report(briefing, outcome, f"call status {status}", leg)

    async def on_amd(self, key: str, answered_by: str, leg: str) -> dict[str, Any]:
        """Answering machine detection on the person's leg: a machine declines
        (``voicemail``; the caller's owner hangs that leg up)."""
        briefing = await self.find(key)
        if briefing is None or answered_by not in MACHINE | {"fax"}:
            return {"outcome": None}
        taken = await self.report(briefing, "voicemail", answered_by, leg)
        return {"outcome": "voicemail", "taken": taken}
