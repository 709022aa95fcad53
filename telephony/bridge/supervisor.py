"""The model sessions behind one call: connect, pump, renew before the session's cap, and
reconnect once after a failure, replaying the conversation into each new session.

- **Renewal.** A Realtime session lasts at most an hour (``session.created`` says when it
  expires; ``MODEL_SESSION_MAX`` when it does not). ``renewal_margin`` before that, the next
  session opens beside the current one (same agent and settings; make before break, so the
  connect costs the caller nothing), and at the first quiet moment after (nothing playing or
  held back, no response or tool under way, the caller not speaking) it takes over: caller
  audio is held from that moment, the conversation so far is replayed into the new session
  with a note not to greet again, the held audio follows, and the old session closes in the
  background. An unplanned ``session_expired`` (a cap we did not know, or no quiet moment
  before it) is handled the same way, at once, with the open spare if there is one. Renewals
  have no budget: they are routine, not failures.
- **Failures.** A failed first connect gets one retry. A session that fails mid-call (error,
  close, reset, a send that fails, no pong) is replaced once: the conversation is replayed and
  the agent says sorry and goes on. A second failure ends the call, politely when it can
  (``<Say>`` and ``<Hangup/>`` through Twilio's REST API).
- **Replay.** The conversation so far goes into each new session (:mod:`.replay`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agents.realtime import RealtimePlaybackTracker, RealtimeSession

from ..agent.openai_model import ModelRefused
from ..agent.sessions import (
    create_response,
    greet,
    is_session_expired,
    server_event,
    session_expires_at,
)
from ..agent.tools import CallContext, CallControl
from ..config import CallLimits
from ..observability.call_log import describe_error
from ..observability.recorder import SessionRecorder
from .host import SessionHost
from .outbound import OutboundAudio
from .replay import ConversationReplay
from .stream import apologise
from .tracker import PhonePlaybackTracker

if TYPE_CHECKING:
    from .prewarm import Prewarmed

__all__ = [
    "MODEL_FAILURES",
    "POLITE_ENDINGS",
    "RENEWALS",
    "OpenSession",
    "SessionHost",
    "SessionSupervisor",
    "TakePrewarmed",
]

logger = logging.getLogger("telephony.bridge")

OpenSession = Callable[[RealtimePlaybackTracker, CallContext], Awaitable[RealtimeSession]]
"""Builds a session (not yet connected) for a call: ``(tracker, context) -> RealtimeSession``."""
TakePrewarmed = Callable[[str], Awaitable["Prewarmed | None"]]
"""``call_sid -> Prewarmed | None``: the session opened for the call at the webhook."""

MODEL_FAILURES = frozenset(
    {"model_error", "model_ended", "model_send_failed", "model_connect_failed"}
)
RENEWALS = frozenset({"model_renewal", "session_expired"})
POLITE_ENDINGS = frozenset({"server_shutdown", "max_duration"})  # we hang up: say goodbye
QUIET_POLL_S = 0.05
SPARE_RETRY_S = 5.0  # a renewal's failed connect is tried again this often until the cap
RESUME_INSTRUCTIONS = (
    "The connection to you dropped for a moment and has just been restored. In one short "
    "sentence, say sorry for the interruption, then continue the conversation where it was."
)


class SessionSupervisor:
    """Runs one call's model sessions until the call ends.

    Args:
        open_session: builds a session for the call.
        limits: connect and close timeouts, session life, renewal margin, history to replay.
        record: writes a call-log record.
        recorder: the session recorder (the conversation so far, what is under way).
        outbound: the call's outbound audio (a new tracker per session).
        control: what the agent's tools act on.
        greeting: said by the agent on the first session ('' for none).
        backend: which model answers, for the call log.
        reconnects: how many times a failed session is replaced.
        on_model_failure: ``(call_sid, reason) -> how``: tells the caller we are ending the call
            (through the carrier); None just closes the stream.
        prewarmed: ``call_sid -> Prewarmed | None``: the session opened for the call at the
            webhook (see :mod:`.prewarm`), taken for the first session instead of a connect.
    """

    def __init__(
        self,
        open_session: OpenSession,
        limits: CallLimits,
        record: Callable[..., Any],
        recorder: SessionRecorder,
        outbound: OutboundAudio,
        control: CallControl,
        *,
        greeting: str = "",
        backend: str = "openai",
        reconnects: int = 1,
        on_model_failure: Callable[[str, str], Awaitable[str]] | None = None,
        prewarmed: TakePrewarmed | None = None,
    ) -> None:
        self._open_session = open_session
        self._prewarmed = prewarmed
        self._greeted = False
        self._limits = limits
        self._record = record
        self._recorder = recorder
        self._outbound = outbound
        self._control = control
        self._greeting = greeting
        self._backend = backend
        self._reconnects_left = reconnects
        self._on_model_failure = on_model_failure
        self._sessions = 0
        self._expires_at = 0.0  # monotonic
        self._expired = False
        self._call_sid = ""
        self._spare: RealtimeSession | None = None  # the next session, open, not yet in use
        self._trackers: dict[RealtimeSession, PhonePlaybackTracker] = {}  # open, not in use
        self._closing: set[asyncio.Task[None]] = set()
        self._history = ConversationReplay(recorder, limits.history_tokens)
        self._renewed: dict[str, Any] | None = None  # a renewal's record, until it has the call
        self._switch_started = 0.0
        self._not_quiet: dict[str, float] = {}  # seconds each kept the open spare waiting
        self.renewals = 0
        self.model_errors = 0

    async def run(
        self, call_sid: str, host: SessionHost, set_reason: Callable[[str], None]
    ) -> None:
        """Run sessions until the model is gone for good (then ``set_reason`` gets why, and the
        caller is told); runs until cancelled otherwise."""
        session = await self._connect(call_sid)
        try:
            await self._run(call_sid, host, set_reason, session)
        finally:
            if self._spare is not None:
                await self._close(self._spare)
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _run(
        self,
        call_sid: str,
        host: SessionHost,
        set_reason: Callable[[str], None],
        session: RealtimeSession | None,
    ) -> None:
        if session is not None:
            await self._activate(session)
        while True:
            spare: RealtimeSession | None = None
            switch_started = time.monotonic()
            if session is None:
                reason = "model_connect_failed"
            else:
                try:
                    reason, spare = await self._drive(session, host)
                except BaseException:  # the call is over (or cancelled)
                    host.detach()
                    await self._close(session)
                    raise
                if host.detach():
                    switch_started = time.monotonic()
                else:  # held since the quiet moment
                    switch_started = self._switch_started
                if reason in RENEWALS:  # the old session closes while the new one takes over
                    self._close_later(session)
                else:
                    await self._close(session)
            if reason in RENEWALS:
                session = spare or await self._connect(call_sid)
                if session is not None:
                    await self._activate(session)
                    await self._replay(session, renewal=reason)
                    self._switch_started = switch_started
                    continue
                reason = "model_connect_failed"
            if self._reconnects_left > 0:
                self._reconnects_left -= 1
                self._record("model.reconnecting", after=reason)
                session, spare = spare or await self._connect(call_sid), None
                if session is not None:
                    await self._activate(session)
                    await self._replay(session)
                    continue
                reason = "model_connect_failed"
            if spare is not None:
                await self._close(spare)
            set_reason(reason)
            await self.apologise(call_sid, reason, host)
            return

    async def _drive(
        self, session: RealtimeSession, host: SessionHost
    ) -> tuple[str, RealtimeSession | None]:
        """Attach ``session`` and pump it until it ends, fails or is due for renewal; returns
        why it stopped, and the next session if one was opened for a renewal."""
        try:
            await host.attach(session)
        except Exception as exc:
            self._record("model.error", where="send_audio", error=describe_error(exc))
            return "model_send_failed", None
        if self._renewed is not None:  # the caller's audio flows again: the switch is over
            held_ms = round((time.monotonic() - self._switch_started) * 1000, 1)
            self._record("model.renewed", **self._renewed, switch_ms=held_ms)
            self._renewed = None
        self._expired = False
        self._expires_at = time.monotonic() + self._limits.session_max
        pump = asyncio.create_task(self._pump(session, host), name="model-pump")
        renewal = asyncio.create_task(self._renew(), name="model-renewal")
        broken = asyncio.create_task(host.broken.wait(), name="model-broken")
        quiet = asyncio.create_task(self._quiet_with_spare(host), name="model-quiet")
        tasks = {pump, renewal, broken, quiet}
        try:
            done, _ = await asyncio.wait({pump, broken, quiet}, return_when=asyncio.FIRST_COMPLETED)
            if broken in done and pump not in done:  # let the model side say how it ended
                done |= (await asyncio.wait({pump}, timeout=self._limits.close_timeout))[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        spare, self._spare = self._spare, None
        if pump in done:
            reason = pump.result()  # raises what the host raised: the call is over
        elif broken in done:
            reason = "model_send_failed"
        else:
            reason = "model_renewal"
        if self._expired and reason in MODEL_FAILURES:
            reason = "session_expired"  # the cap, not a failure
        return reason, spare

    async def _pump(self, session: RealtimeSession, host: SessionHost) -> str:
        """The session's events to the host until the session ends; returns how it ended."""
        events = session.__aiter__()
        while True:
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                return "model_ended"
            except Exception as exc:
                self.model_errors += 1
                self._record("model.error", where="session", error=describe_error(exc))
                return "model_error"
            self._watch(event)
            await host.on_model_event(event)

    def _watch(self, event: Any) -> None:
        """Learn the session's expiry (``session.created``) and an expired cap."""
        raw = server_event(event)
        if raw is None:
            return
        expires = session_expires_at(raw)
        if expires is not None:
            self._expires_at = time.monotonic() + (expires - time.time())
        elif is_session_expired(raw):
            self._expired = True

    async def _renew(self) -> None:
        """Once the session is within ``renewal_margin`` of its expiry, open the next one
        beside it (make before break: the caller keeps the old one while the new one
        connects); a failed connect is tried again until the cap."""
        while True:
            wait = self._expires_at - self._limits.renewal_margin - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(min(wait, 1.0))  # session.created may still move it
        call_sid = self._call_sid
        while True:
            spare = await self._connect(call_sid, purpose="renewal")
            if spare is not None:
                break
            await asyncio.sleep(SPARE_RETRY_S)
        try:
            await self._history.prime(spare)
        except Exception as exc:  # it is not fit to take the call
            self._record("model.error", where="prime", error=describe_error(exc))
            self._close_later(spare)
            return
        except asyncio.CancelledError:
            self._close_later(spare)
            raise
        self._spare = spare

    async def _quiet_with_spare(self, host: SessionHost) -> None:
        """Returns at the first quiet moment once the next session is open, with caller audio
        held from that moment (if none comes, the cap's ``session_expired`` does the renewal,
        with the spare if it is open).

        The hold starts in the same step as the ``quiet()`` that allowed it: frames already
        waiting in the socket (after the event loop was busy) would otherwise reach the old
        session while the switch is under way, and a turn the caller starts in them would be
        heard by a session about to close."""
        self._not_quiet = {}
        while self._spare is None:  # noqa: ASYNC110 (a poll, as below)
            await asyncio.sleep(QUIET_POLL_S)
        last = time.monotonic()
        while under_way := host.under_way():
            await asyncio.sleep(QUIET_POLL_S)
            now = time.monotonic()
            for name in under_way:  # why the spare waited, for a renewal at the cap
                self._not_quiet[name] = self._not_quiet.get(name, 0.0) + now - last
            last = now
        host.detach()
        self._switch_started = time.monotonic()

    async def _connect(self, call_sid: str, purpose: str = "call") -> RealtimeSession | None:
        """Open and connect a session with a fresh tracker (the call is not given to it yet:
        see :meth:`_activate`), or for the call's first, adopt the one opened at the webhook;
        None if it failed."""
        self._call_sid = call_sid
        if self._prewarmed is not None:  # only ever the first session
            take, self._prewarmed = self._prewarmed, None
            session = await self._adopt(call_sid, take)
            if session is not None:
                return session
        self._record("model.connecting", backend=self._backend, purpose=purpose)
        tracker = PhonePlaybackTracker()
        t0 = time.monotonic()
        session: RealtimeSession | None = None
        try:
            context = CallContext(call_sid=call_sid, control=self._control)
            session = await self._open_session(tracker, context)
            async with asyncio.timeout(self._limits.connect_timeout):
                await session.enter()
        except asyncio.CancelledError:
            if session is not None:  # half open: it must not outlive the call
                self._close_later(session)
            raise
        except Exception as exc:
            refused = isinstance(exc, ModelRefused) and exc.permanent  # a key, a permission
            self._record("model.connect_failed", error=describe_error(exc), refused=refused)
            logger.warning("call %s: model connect failed: %s", call_sid, describe_error(exc))
            if refused:
                self._reconnects_left = 0  # the same request would be refused again
                return None
            if self._reconnects_left > 0 and self._sessions == 0:
                self._reconnects_left -= 1  # a failed first connect gets its one retry here
                self._record("model.reconnecting", after="model_connect_failed")
                return await self._connect(call_sid)
            return None
        self._trackers[session] = tracker
        connect_ms = round((time.monotonic() - t0) * 1000, 1)
        self._record("model.connected", connect_ms=connect_ms, backend=self._backend)
        return session

    async def _adopt(self, call_sid: str, take: TakePrewarmed) -> RealtimeSession | None:
        """The session pre-warmed for ``call_sid``, now the call's (its tools act on this
        call); None when there was none or it failed to connect."""
        prewarmed = await take(call_sid)
        if prewarmed is None:
            return None
        prewarmed.context.attach(self._control)
        self._trackers[prewarmed.session] = prewarmed.tracker
        self._greeted = prewarmed.greeted
        self._record(
            "prewarm",
            outcome="adopted",
            waited_ms=round(prewarmed.waited_s * 1000, 1),
            greeted=prewarmed.greeted,
        )
        connected = {"connect_ms": prewarmed.connect_ms, "backend": self._backend}
        self._record("model.connected", **connected, prewarmed=True)
        return prewarmed.session

    async def _activate(self, session: RealtimeSession) -> None:
        """``session`` takes the call: its tracker hears of the audio played, what the old
        session had under way is forgotten; the first one greets."""
        self._sessions += 1
        self._outbound.new_session(self._trackers.pop(session))
        self._recorder.session_replaced()
        opening = getattr(self._control, "opening", None)  # a warm transfer's briefing
        greeting = ""
        if self._sessions == 1:  # None: no greeting (a handed-off transfer's caller holds)
            said = opening() if opening else ""
            greeting = self._greeting if said == "" else said or ""
        if greeting:
            if not self._greeted:
                await greet(session, greeting)
            self._record("greeting.requested", text=greeting, prewarmed=self._greeted)

    def _close_later(self, session: RealtimeSession) -> None:
        task = asyncio.create_task(self._close(session), name="model-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _replay(self, session: RealtimeSession, renewal: str | None = None) -> None:
        """Give a new session the conversation so far (see :mod:`.replay`). After a failure
        the agent is asked to apologise and go on; after a renewal it is told to carry on
        unnoticed."""
        figures = await self._history.replay(session, renewal=bool(renewal))
        if renewal:
            self.renewals += 1
            self._renewed = {  # recorded once the session has the call
                "after": "planned" if renewal == "model_renewal" else renewal,
                "renewal": self.renewals,
                **figures,
            }
            if renewal != "model_renewal" and self._not_quiet:  # why not before the cap
                self._renewed["not_quiet_s"] = {
                    name: round(s, 2) for name, s in self._not_quiet.items()
                }
            return
        await create_response(session, RESUME_INSTRUCTIONS)
        self._record(
            "model.replayed",
            items=figures["items"],
            turns_left_out=figures["turns_left_out"],
            chars=figures["chars"],
        )

    async def apologise(self, call_sid: str, reason: str, host: SessionHost | None = None) -> None:
        """We are ending the call (model gone, shutdown, time limit): tell the caller if we
        can (Twilio's REST ``<Say>``; for a model that failed, without REST, the recorded
        apology over the stream); the stream is closed after."""
        fallback = host.say_sorry if reason in MODEL_FAILURES and host is not None else None
        await apologise(
            self._on_model_failure,
            call_sid,
            reason,
            self._limits.close_timeout,
            self._record,
            fallback,
        )

    async def _close(self, session: RealtimeSession) -> None:
        self._trackers.pop(session, None)
        self._history.forget(session)
        try:
            async with asyncio.timeout(self._limits.close_timeout):
                await session.close()
        except TimeoutError:
            self._record("model.close_timeout", timeout_s=self._limits.close_timeout)
        except Exception as exc:
            self._record("model.close_error", error=describe_error(exc))
