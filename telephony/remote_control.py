"""Call control from any instance: ``POST /calls/{sid}/hangup`` and ``POST /calls/{sid}/transfer``.

The call's owner (the instance running it, from the fleet state) does it politely: the agent
says goodbye or announces the transfer, then the carrier acts. The request reaches the owner
over the fleet's control channel (Redis pub/sub with a reply and a timeout). When the owner is
unknown, does not answer in ``CONTROL_TIMEOUT`` or the fleet state is down, this instance acts
through the carrier directly: Twilio's REST API for a CallSid, OpenAI's Calls API for a SIP
``call_id``. That needs no shared state; only the spoken goodbye is lost.

What crosses the control channel is sealed by the fleet state (only members of the fleet can
send it) and checked here against a schema (:data:`ControlMessage`, :class:`LiveReply`): a
message or a reply that does not fit changes nothing and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from openai import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .admission import CallRegistry
from .bridge import PrewarmPool
from .fleet import FleetState, FleetUnavailable
from .observability.call_log import CallLogs
from .sip import SipCalls
from .twilio.dial import MACHINE
from .twilio.ids import is_call_sid
from .twilio.rest import TwilioCalls
from .twilio.twiml import dial_twiml

__all__ = [
    "CallNotFound",
    "ControlMessage",
    "ControlResult",
    "ControlUnavailable",
    "LiveReply",
    "RemoteControl",
]

logger = logging.getLogger("telephony.remote_control")

Short = Annotated[str, Field(max_length=64)]
CallId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # req, reply_to: the channel's own


class LiveOp(_Message):
    """``live``: list this instance's calls in progress."""

    op: Literal["live"]


class HangUpArgs(BaseModel):
    reason: Short = "operator"


class HangUpOp(_Message):
    """``hangup``: say goodbye on ``call`` and hang up."""

    op: Literal["hangup"]
    call: CallId
    args: HangUpArgs = HangUpArgs()


class TransferArgs(BaseModel):
    destination: Short


class TransferOp(_Message):
    """``transfer``: announce and transfer ``call`` to a destination name of
    ``TRANSFER_TARGETS`` (the owner checks it against its own)."""

    op: Literal["transfer"]
    call: CallId
    args: TransferArgs


class AmdArgs(BaseModel):
    answered_by: Short
    message: Annotated[str, Field(max_length=500)] = ""


class AmdOp(_Message):
    """``amd``: Twilio's answering machine detection result for an outbound ``call``."""

    op: Literal["amd"]
    call: CallId
    args: AmdArgs


class UnwarmArgs(BaseModel):
    reason: Short = ""


class UnwarmOp(_Message):
    """``unwarm``: close the model session pre-warmed here for ``call`` (its stream started
    on another instance, or a final call status came there)."""

    op: Literal["unwarm"]
    call: CallId
    args: UnwarmArgs = UnwarmArgs()


class WarmArgs(BaseModel):
    key: Annotated[str, Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    outcome: Short
    why: Annotated[str, Field(max_length=120)] = ""
    leg: Annotated[str, Field(max_length=64)] = ""


class WarmOp(_Message):
    """``warm``: a decision of ``call``'s warm transfer (from the person's leg or a callback)."""

    op: Literal["warm"]
    call: CallId
    args: WarmArgs


_Op = LiveOp | HangUpOp | TransferOp | AmdOp | UnwarmOp | WarmOp
ControlMessage = Annotated[_Op, Field(discriminator="op")]
"""The control messages an owner acts on (extra keys ignored; sizes bounded)."""
_MESSAGE: TypeAdapter[_Op] = TypeAdapter(ControlMessage)
PREWARM_KEY = "prewarm:{}"  # fleet state: the instance holding a call's pre-warmed session


class LiveCall(BaseModel):
    """One row of another instance's ``live`` reply."""

    call_sid: CallId
    caller: Annotated[str, Field(max_length=128)] = ""
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    instance: Short
    transfer: Annotated[str, Field(max_length=120)] = ""


class LiveReply(BaseModel):
    """Another instance's answer to ``live``: at most 1000 calls."""

    ok: bool
    calls: Annotated[list[LiveCall], Field(max_length=1000)] = []


class CallNotFound(LookupError):
    """No live call with that id, as far as the owner and the carrier know."""


class ControlUnavailable(RuntimeError):
    """Nobody can act on the call: no owner answered and there is no carrier credential."""


@dataclass
class ControlResult:
    """How a control request was carried out: ``via`` ``owner``, ``twilio_rest`` or
    ``openai_calls_api``; ``instance`` is the owner that acted (None for the carrier)."""

    via: str
    instance: str | None = None


class RemoteControl:
    """Routes operator call control to the owner, with the carrier as the fallback.

    Args:
        registry: this instance's calls (the owner side acts on them).
        state: the fleet state (owners, control channel).
        logs: call logs, for the ``control.request`` record.
        rest: Twilio REST access; None without credentials.
        sip: the SIP path (its Calls API client); None when off.
        targets: allowed transfer destinations, ``{name: +E.164 or sip: URI}``.
        timeout_s: how long to wait for the owner's reply (``CONTROL_TIMEOUT``).
        show_number: how a caller's number is shown in :meth:`live` (masked by default: it
            crosses the fleet's control channel).
        prewarm: this instance's pre-warmed sessions (``unwarm`` closes one); None when off.
    """

    def __init__(
        self,
        registry: CallRegistry,
        state: FleetState,
        logs: CallLogs,
        rest: TwilioCalls | None,
        sip: SipCalls | None,
        targets: dict[str, str],
        timeout_s: float = 2.0,
        show_number: Callable[[str | None], str] = lambda number: "",
        prewarm: PrewarmPool | None = None,
    ) -> None:
        self._registry = registry
        self._prewarm = prewarm
        self._show_number = show_number
        self._state = state
        self._logs = logs
        self._rest = rest
        self._sip = sip
        self._targets = targets
        self._timeout_s = timeout_s

    async def hang_up(self, call_id: str, reason: str = "operator") -> ControlResult:
        """End the call ``call_id``.

        Raises:
            CallNotFound: no such live call, or not one of this service's (the carrier acts
                only on calls we answered, dialled or accepted).
            ControlUnavailable: no owner answered and no carrier credential.
        """
        result = await self._via_owner("hangup", call_id, {"reason": reason})
        if result is None:
            await self._only_ours(call_id)
            result = await self._carrier_hang_up(call_id)
        self._log(call_id, "hangup", result)
        return result

    async def transfer(self, call_id: str, destination: str) -> ControlResult:
        """Transfer ``call_id`` to an allowed destination name (checked by the caller).

        Raises:
            CallNotFound, ControlUnavailable: as for :meth:`hang_up`.
        """
        result = await self._via_owner("transfer", call_id, {"destination": destination})
        if result is None:
            await self._only_ours(call_id)
            result = await self._carrier_transfer(call_id, self._targets[destination])
        self._log(call_id, "transfer", result, destination=destination)
        return result

    async def answered(self, call_id: str, answered_by: str, message: str) -> ControlResult:
        """Twilio's answering machine detection result for ``call_id`` reaches its owner,
        which leaves ``message`` on a machine or hangs up on a fax. Without an owner, the
        carrier acts: a fax or unknown answer is hung up, a machine hears ``message`` in
        Twilio's text-to-speech voice first (the agent's session is gone).

        Raises:
            CallNotFound, ControlUnavailable: as for :meth:`hang_up` (only when the carrier
            had to act).
        """
        args = {"answered_by": answered_by, "message": message}
        result = await self._via_owner("amd", call_id, args)
        if result is None and answered_by in MACHINE:
            if self._rest is None or not is_call_sid(call_id):
                raise ControlUnavailable("no owner and no Twilio REST credentials")
            if not await self._rest.say_and_hang_up(call_id, message):
                raise CallNotFound(call_id)
            result = ControlResult("twilio_rest")
        elif result is None and answered_by in ("fax", "unknown"):
            result = await self._carrier_hang_up(call_id)
        elif result is None:
            result = ControlResult("none")  # a human answered and nobody needs to act
        self._log(call_id, "amd", result, answered_by=answered_by)
        return result

    async def warm(self, call_id: str, key: str, outcome: str, why: str, leg: str) -> bool:
        """A warm transfer's decision to the owner of the caller's leg ``call_id``; True when
        its transfer ``key`` took it (False: the caller is gone, or it was decided before)."""
        args = {"key": key, "outcome": outcome, "why": why[:120], "leg": leg}
        result = await self._via_owner("warm", call_id, args)
        if result is not None:  # (none taken: the caller's log may have ended; left alone)
            self._log(call_id, "warm", result, outcome=outcome)
        return result is not None

    async def note_prewarm(self, call_id: str, ttl_s: float) -> None:
        """Record this instance as the holder of ``call_id``'s pre-warmed session (for
        ``ttl_s``), so that another instance can have it closed (:meth:`discard_prewarm`)."""
        try:
            await self._state.remember(PREWARM_KEY.format(call_id), self._state.instance, ttl_s)
        except FleetUnavailable:
            pass

    async def prewarmed_elsewhere(self, call_id: str) -> bool:
        """Whether another instance holds ``call_id``'s pre-warmed session (False when the
        fleet state is down: then at worst two are open, each closed by its own timer)."""
        try:
            holder = await self._state.recall(PREWARM_KEY.format(call_id))
        except FleetUnavailable:
            return False
        return holder is not None and holder != self._state.instance

    async def discard_prewarm(self, call_id: str, reason: str) -> bool:
        """Have the instance holding ``call_id``'s pre-warmed session close it now (its stream
        started here, or a final call status came here); True when it did. Nothing to do
        when no instance holds one; with the fleet state down or the holder silent, its own
        timer closes it (``MODEL_PREWARM_TIMEOUT``)."""
        try:
            holder = await self._state.recall(PREWARM_KEY.format(call_id))
            if holder is None or holder == self._state.instance:
                return False
            message = {"op": "unwarm", "call": call_id, "args": {"reason": reason[:64]}}
            reply = await self._state.request(holder, message, self._timeout_s)
        except FleetUnavailable:
            return False
        return bool(reply and reply.get("ok") and reply.get("detail") == "closed")

    def local_live(self) -> list[dict[str, Any]]:
        """This instance's calls in progress: ``call_sid``, ``caller`` (as ``show_number``
        shows it), ``seconds`` since the call started, ``instance``, ``transfer`` (a warm
        transfer's destination and state)."""
        now = time.monotonic()
        return [
            {
                "call_sid": call_id,
                "caller": self._show_number(getattr(call, "caller", None)),
                "seconds": round(now - getattr(call, "started_at", now), 1),
                "instance": self._state.instance,
                "transfer": _transfer_state(call),
            }
            for call_id, call in self._registry.live.items()
        ]

    async def live(self) -> list[dict[str, Any]]:
        """Calls in progress on every instance of the fleet (each asked over the control
        channel, at once, for at most ``CONTROL_TIMEOUT``), longest first. An instance that
        does not answer is left out; with the fleet state down, only this instance's calls."""
        rows = self.local_live()
        try:
            others = [i for i in await self._state.instances() if i != self._state.instance]
        except FleetUnavailable:
            others = []

        async def ask(instance: str) -> list[dict[str, Any]]:
            try:
                reply = await self._state.request(instance, {"op": "live"}, self._timeout_s)
            except FleetUnavailable:
                return []
            if not reply:
                return []
            try:
                return [call.model_dump() for call in LiveReply.model_validate(reply).calls]
            except ValidationError:
                logger.warning("fleet: instance %s sent a malformed live list; left out", instance)
                return []

        for found in await asyncio.gather(*(ask(i) for i in others)):
            rows.extend(found)
        return sorted(rows, key=lambda row: -float(row.get("seconds") or 0))

    async def on_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """The owner's side: act on a control message for one of our calls (or, for ``live``,
        list them). A message that does not fit :data:`ControlMessage` changes nothing."""
        try:
            op = _MESSAGE.validate_python(message)
        except ValidationError as exc:
            logger.warning(
                "fleet: control message refused (bad schema: %d errors, op %.20r)",
                exc.error_count(),
                message.get("op"),
            )
            return {"ok": False, "error": "bad message"}
        if isinstance(op, LiveOp):
            return {"ok": True, "calls": self.local_live()}
        if isinstance(op, UnwarmOp):
            closed = self._prewarm is not None and self._prewarm.discard(op.call, op.args.reason)
            return {"ok": True, "detail": "closed" if closed else "none"}
        call = self._registry.live.get(op.call)
        if call is None:
            return {"ok": False, "error": "not here"}
        control = call.control
        if isinstance(op, HangUpOp):
            detail = await control.operator_hang_up(op.args.reason)
        elif isinstance(op, TransferOp):
            detail = await control.operator_transfer(op.args.destination)
        elif isinstance(op, WarmOp):
            a = op.args
            taken = control.warm_decided(a.key, a.outcome, a.why, a.leg or None)
            return {"ok": taken, **({} if taken else {"error": "no such transfer"})}
        elif hasattr(control, "on_answered"):  # AMD: Media Streams calls only
            detail = await control.on_answered(op.args.answered_by, op.args.message)
        else:
            return {"ok": False, "error": "unknown op"}
        return {"ok": True, "detail": detail}

    async def _via_owner(self, op: str, call_id: str, args: dict[str, Any]) -> ControlResult | None:
        try:
            owner = await self._state.owner_of(call_id)
        except FleetUnavailable:
            return None
        if owner is None:
            return None
        message = {"op": op, "call": call_id, "args": args}
        if owner == self._state.instance:
            reply: dict[str, Any] | None = await self.on_message(message)
        else:
            try:
                reply = await self._state.request(owner, message, self._timeout_s)
            except FleetUnavailable:
                reply = None
        if not reply or not reply.get("ok"):
            logger.info(
                "call %s: owner %s did not act on %s; using the carrier", call_id, owner, op
            )
            return None
        return ControlResult("owner", owner)

    async def _only_ours(self, call_id: str) -> None:
        """The carrier may act only on our own calls (the Twilio account or OpenAI project
        may carry other apps' calls)."""
        if not await self._registry.is_ours(call_id):
            logger.info("call %s: not a call of this service; left alone", call_id)
            raise CallNotFound(call_id)

    async def _carrier_hang_up(self, call_id: str) -> ControlResult:
        if is_call_sid(call_id):
            if self._rest is None:
                raise ControlUnavailable("no Twilio REST credentials")
            if not await self._rest.hang_up(call_id):
                raise CallNotFound(call_id)
            return ControlResult("twilio_rest")
        if self._sip is None:
            raise ControlUnavailable("the SIP path is off")
        try:
            await self._sip.client.realtime.calls.hangup(call_id)
        except NotFoundError:
            raise CallNotFound(call_id) from None
        return ControlResult("openai_calls_api")

    async def _carrier_transfer(self, call_id: str, target: str) -> ControlResult:
        if is_call_sid(call_id):
            if self._rest is None:
                raise ControlUnavailable("no Twilio REST credentials")
            if not await self._rest.update_twiml(call_id, dial_twiml(target)):
                raise CallNotFound(call_id)
            return ControlResult("twilio_rest")
        if self._sip is None:
            raise ControlUnavailable("the SIP path is off")
        uri = target if target.startswith("sip:") else f"tel:{target}"
        try:
            await self._sip.client.realtime.calls.refer(call_id, target_uri=uri)
        except NotFoundError:
            raise CallNotFound(call_id) from None
        return ControlResult("openai_calls_api")

    def _log(self, call_id: str, op: str, result: ControlResult, **fields: Any) -> None:
        with self._logs.open(call_id, observe=False) as log:
            log.write("control.request", op=op, via=result.via, owner=result.instance, **fields)


def _transfer_state(call: Any) -> str:
    """A live call's warm transfer for the console: ``sales: waiting for the person``, or its
    outcome; '' when there is none."""
    warm = getattr(getattr(call, "control", None), "warm", None)
    if warm is None:
        return ""
    return f"{warm.briefing.destination}: {warm.outcome or 'waiting for the person'}"
