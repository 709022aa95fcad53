"""Calls in progress: capacity, stream tokens at admission, and draining at shutdown.

Shared by the Media Streams and SIP paths, so ``MAX_CONCURRENT_CALLS`` counts both. With a
shared fleet state (``REDIS_URL``), admission also takes a fleet slot (``FLEET_MAX_CALLS``),
claims each stream-token nonce fleet-wide and records this instance as the call's owner. When
the shared state is down, admission falls back to this instance's own rules and says so
(``degraded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..fleet import FleetState, FleetUnavailable, LocalState
from .tokens import StreamTokens, TokenError

__all__ = [
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "Admission",
    "CallRegistry",
    "Controllable",
    "OperatorControl",
    "Refused",
]

logger = logging.getLogger("telephony.admission")

PENDING_TTL_S = 30.0  # an answered call that has not started streaming holds its slot this long
STREAMED = "streamed"  # what a CallSid's answer record says once its stream has started
REFUSED = "refused"  # … or once the webhook refused it
POLICY_VIOLATION = 1008  # WebSocket close code: a bad or missing stream token
TRY_AGAIN_LATER = 1013  # WebSocket close code: at capacity


class Refused(Exception):
    """A stream may not go on: it is closed with ``code`` before any model session."""

    def __init__(self, reason: str, code: int = POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class OperatorControl(Protocol):
    """What an operator may do to a call in progress (both call paths' call control)."""

    async def operator_hang_up(self, reason: str) -> str:
        """Have the agent say goodbye, then hang up through the carrier; returns how."""
        ...

    async def operator_transfer(self, destination: str) -> str:
        """Transfer the caller to an allowed destination name; returns how."""
        ...


class Controllable(Protocol):
    """A call in progress, as draining and remote call control see it."""

    control: Any  # an OperatorControl (a Media Streams call's also takes on_answered)

    def end(self, reason: str) -> None:
        """End the call now (politely where it can)."""
        ...


@dataclass
class Admission:
    """The outcome of admitting a call.

    Attributes:
        token: the stream token (webhook answers only); None when refused.
        reason: why it was refused ('' when admitted).
        degraded: decided by this instance's rules alone, because the fleet state was down.
        first: the call's first answer (a replayed webhook's is not): it took a slot.
    """

    token: str | None = None
    reason: str = ""
    degraded: bool = False
    first: bool = False


class CallRegistry:
    """Calls in progress and answered calls not yet streaming: capacity, tokens, draining.

    Args:
        max_calls: calls on this instance beyond this are answered ``<Reject reason="busy"/>``
            (webhook) or closed with 1013 (stream).
        tokens: issues and redeems per-call stream tokens.
        state: the fleet state; a :class:`~telephony.fleet.LocalState` (one instance) if None.
        fleet_max: calls across the fleet (``FLEET_MAX_CALLS``); None: no fleet limit.
        lease_s: a live call's fleet slot lasts this long without renewal.
        drain_grace_s: while draining in a fleet, streams routed here are still taken this long.
        answer_ttl_s: how long a CallSid's answer is remembered (longer than any call), so a
            replayed webhook cannot start a second stream.
        on_degraded: called with the step (``webhook``, ``stream``, ``sip``) of each admission
            decided without the fleet state.
    """

    def __init__(
        self,
        max_calls: int,
        tokens: StreamTokens,
        state: FleetState | None = None,
        *,
        fleet_max: int | None = None,
        lease_s: float = 30.0,
        drain_grace_s: float = 10.0,
        answer_ttl_s: float = 4200.0,
        on_degraded: Callable[[str], None] | None = None,
    ) -> None:
        self.max_calls = max_calls
        self.tokens = tokens
        self.state = state or LocalState("local")
        self.fleet = self.state.shared
        self._local = self.state if not self.fleet else LocalState(self.state.instance)
        self._answer_ttl_s = answer_ttl_s
        self.state.live_calls = lambda: dict(self.paths)
        self._fleet_max = fleet_max
        self._lease_s = lease_s
        self._drain_grace_s = drain_grace_s
        self._on_degraded = on_degraded
        self.draining = False
        self._draining_since = 0.0
        self.calls: set[str] = set()  # admitted call ids on this instance
        self.paths: dict[str, str] = {}  # admitted call id -> "media" | "sip"
        self.pending: dict[str, float] = {}  # answered CallSid -> deadline to start
        self.live: dict[str, Controllable] = {}  # call id -> the call, for remote control
        self.sockets: dict[asyncio.Task[Any], Controllable] = {}  # every call task in progress
        # media sockets accepted, no `start` yet, oldest first (the oldest is evicted for a new one)
        self.awaiting_start: dict[Any, None] = {}

    @property
    def ready(self) -> bool:
        """Whether a load balancer should send new calls here (``/readyz``): not draining and,
        in a fleet, not full."""
        return not self.draining and (not self.fleet or len(self.calls) < self.max_calls)

    def _live_pending(self) -> int:
        now = time.monotonic()
        self.pending = {sid: t for sid, t in self.pending.items() if t > now}
        return len(self.pending)

    def _local_room(self) -> bool:
        return not self.draining and len(self.calls) + self._live_pending() < self.max_calls

    def _degraded(self, step: str) -> None:
        if self._on_degraded is not None:
            self._on_degraded(step)

    async def answer(self, call_sid: str) -> Admission:
        """The webhook's decision: a stream token for a new call, or busy.

        A repeated webhook for a call still waiting for its stream gets the same token and no
        second slot; one for a call that has streamed or was refused is refused. In a fleet
        the stream may reach any instance, so only the fleet's slots count here, and a draining
        instance still answers while the fleet has room.
        """
        fresh = self.tokens.issue(call_sid)
        await self.mark_ours(call_sid)
        before, degraded = await self._remember(f"answer:{call_sid}", fresh)
        if before in (STREAMED, REFUSED) or call_sid in self.calls:
            return Admission(reason=f"repeated webhook ({before or STREAMED})", degraded=degraded)
        if before is not None:
            return Admission(before, degraded=degraded)  # its slot is held already
        reason, degraded = await self._pending_slot(call_sid, degraded)
        if reason:
            await self._overwrite(f"answer:{call_sid}", REFUSED)
            return Admission(reason=reason, degraded=degraded)
        return Admission(fresh, degraded=degraded, first=True)

    async def _pending_slot(self, call_sid: str, degraded: bool) -> tuple[str, bool]:
        """Hold a slot for an answered call until its stream starts; returns ``(why not or '',
        degraded)``."""
        if self.fleet and not degraded:
            try:
                held = await self.state.reserve(call_sid, PENDING_TTL_S, self._fleet_max)
            except FleetUnavailable:
                degraded = True
            else:
                return ("" if held else "fleet at capacity"), False
        if degraded:
            self._degraded("webhook")
        if not self._local_room():
            return ("draining" if self.draining else "at capacity"), degraded
        self.pending[call_sid] = time.monotonic() + PENDING_TTL_S
        return "", degraded

    async def mark_ours(self, call_id: str) -> None:
        """``call_id`` is a call of this service (answered, dialled or accepted here): operator
        call control may act on it through the carrier (:meth:`is_ours`)."""
        await self._remember(f"ours:{call_id}", "1")

    async def is_ours(self, call_id: str) -> bool:
        """Whether this service answered, dialled or accepted ``call_id`` (within the answer
        TTL), here or, in a fleet, on any instance (when the fleet state is up). A carrier
        account may carry other apps' calls: those are not ours to hang up or transfer."""
        if call_id in self.live or await self._local.recall(f"ours:{call_id}"):
            return True
        if not self.fleet:
            return False
        try:
            return await self.state.recall(f"ours:{call_id}") is not None
        except FleetUnavailable:
            return False

    async def _remember(self, key: str, value: str) -> tuple[str | None, bool]:
        """Store ``value`` once (here, and fleet-wide when there is a fleet); returns what was
        there already (the fleet's record wins) and whether the fleet state was down."""
        before = await self._local.remember(key, value, self._answer_ttl_s)
        if not self.fleet:
            return before, False
        try:
            return await self.state.remember(key, value, self._answer_ttl_s), False
        except FleetUnavailable:
            return before, True

    async def _overwrite(self, key: str, value: str) -> None:
        await self._local.overwrite(key, value)
        if self.fleet:
            with contextlib.suppress(FleetUnavailable):
                await self.state.overwrite(key, value)

    async def admit(self, call_sid: str, token: str | None, path: str = "media") -> Admission:
        """The admission check when a stream's ``start`` arrives with ``token``.

        Raises:
            Refused: a bad, expired or reused token, or a call that is streaming already (1008);
                no room here or in the fleet, or draining past its grace (1013).
        """
        try:
            nonce, expiry = self.tokens.redeem(call_sid, token)
        except TokenError as exc:
            raise Refused(str(exc)) from None
        if call_sid in self.calls:
            raise Refused("call already streaming")
        self.pending.pop(call_sid, None)
        if len(self.calls) >= self.max_calls:
            raise Refused("at capacity", TRY_AGAIN_LATER)
        if self.fleet and self.draining:
            if time.monotonic() - self._draining_since > self._drain_grace_s:
                raise Refused("draining", TRY_AGAIN_LATER)
        self.calls.add(call_sid)  # hold the local slot across the awaits below
        try:
            if not self.fleet and not await self._local.claim(f"nonce:{nonce}", expiry):
                raise Refused("stream token already used")  # before a restart, say
            degraded = await self._join_fleet(call_sid, path, f"nonce:{nonce}", expiry)
        except Refused:
            self.calls.discard(call_sid)
            raise
        self.paths[call_sid] = path
        await self._overwrite(f"answer:{call_sid}", STREAMED)
        if degraded:
            self._degraded("stream")
        return Admission(degraded=degraded)

    async def _join_fleet(
        self, call_id: str, path: str, claim: str | None, expires_at: float
    ) -> bool:
        """Claim once, take a fleet slot, record the owner; returns whether it was degraded."""
        if not self.fleet:
            return False
        try:
            if claim is not None and not await self.state.claim(claim, expires_at):
                raise Refused("stream token already used")
            if not await self.state.reserve(call_id, self._lease_s, self._fleet_max):
                raise Refused("fleet at capacity", TRY_AGAIN_LATER)
            if not await self.state.own(call_id, path):
                raise Refused("call already streaming on another instance")
        except FleetUnavailable:
            return True
        return False

    async def admit_sip(self, call_id: str) -> Admission:
        """Take a SIP call if there is room here and in the fleet (and we are not draining)."""
        await self.mark_ours(call_id)
        if self.draining or len(self.calls) + self._live_pending() >= self.max_calls:
            return Admission(reason="draining" if self.draining else "at capacity")
        self.calls.add(call_id)
        try:
            degraded = await self._join_fleet(call_id, "sip", None, 0.0)
        except Refused as refused:
            self.calls.discard(call_id)
            return Admission(reason=refused.reason)
        self.paths[call_id] = "sip"
        if degraded:
            self._degraded("sip")
        return Admission(degraded=degraded)

    async def claim_once(self, key: str, expires_at: float) -> bool:
        """A fleet-wide single-use claim (e.g. a SIP delivery); True when the fleet state is
        down (the caller's own local check is all there is then)."""
        if not self.fleet:
            return True
        try:
            return await self.state.claim(key, expires_at)
        except FleetUnavailable:
            return True

    async def unclaim(self, key: str) -> None:
        """Forget a fleet-wide claim, so that a redelivery can try again."""
        if self.fleet:
            try:
                await self.state.unclaim(key)
            except FleetUnavailable:
                pass

    async def release(self, call_id: str | None) -> None:
        """The call ended: free its slot here and in the fleet (its lease lapses otherwise)."""
        if call_id is None or call_id not in self.calls:
            return
        self.calls.discard(call_id)
        self.paths.pop(call_id, None)
        self.live.pop(call_id, None)
        if self.fleet:
            try:
                await self.state.release(call_id)
            except FleetUnavailable:
                pass

    async def start_draining(self) -> None:
        """Take no new calls: leave the fleet's ready set (``/readyz`` answers 503)."""
        if not self.draining:
            self.draining = True
            self._draining_since = time.monotonic()
            await self.state.set_draining(True)

    async def drain(self, grace_s: float, goodbye_s: float = 10.0) -> None:
        """Take no new calls; let calls run up to ``grace_s`` seconds; then end the rest
        politely (each says goodbye if it can and writes its ``call.end``), cancelling any that
        have not ended ``goodbye_s`` seconds later."""
        await self.start_draining()
        deadline = time.monotonic() + grace_s
        if self.sockets and grace_s > 0:
            logger.info(
                "draining: %d call(s) in progress, waiting up to %.0fs", len(self.sockets), grace_s
            )
        while self.sockets and time.monotonic() < deadline:  # streams may still arrive (grace)
            await asyncio.wait(set(self.sockets), timeout=min(0.5, deadline - time.monotonic()))
        if not self.sockets:
            return
        logger.info("ending %d call(s) for shutdown", len(self.sockets))
        for call in self.sockets.values():
            call.end("server_shutdown")
        await asyncio.wait(set(self.sockets), timeout=goodbye_s)
        for task in list(self.sockets):
            task.cancel()
        if self.sockets:
            await asyncio.gather(*self.sockets, return_exceptions=True)
