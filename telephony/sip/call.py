"""One SIP call's sideband session: greeting, tools, call control and the call log.

The audio goes straight from the SIP trunk to OpenAI; we attach a ``RealtimeSession`` to the
call by its ``call_id`` (the SDK's ``OpenAIRealtimeSIPModel``) and act through the Realtime
Calls API: ``end_call`` → ``calls.hangup``, ``transfer_call`` → ``calls.refer``.

- **Goodbyes are heard.** A hang-up waits for the goodbye response to be generated and then
  for OpenAI's ``output_audio_buffer.stopped`` naming it (its audio finished playing at the
  caller); a session that does not report its output buffer gets ``GOODBYE_MARGIN_S`` instead.
  ``HANGUP_GRACE`` bounds the wait.
- **Watchdog.** ``MAX_CALL_DURATION`` after the accept, ``IDLE_TIMEOUT`` without anything said
  or played by either side, and shortly before the session's cap, the agent says a short
  goodbye and the call is hung up (``max_duration``, ``idle_timeout``, ``session_cap``). A SIP
  call cannot outlive its Realtime session: a sideband attaches to the call's one session
  (OpenAI: "two active connections to the same Realtime session"), so a new sideband does not
  bring a new session. The call ends at the first quiet moment within ``MODEL_RENEWAL_MARGIN``
  of ``expires_at``, and at the latest ``HANGUP_GRACE`` + 5 s before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from openai import AsyncOpenAI, NotFoundError

from ..agent.sessions import greet, server_event, session_expires_at
from ..agent.tools import CallContext
from ..config import CallFeatures, CallLimits
from ..control import CallController
from ..observability.call_log import CallLogs, describe_error
from ..observability.recorder import SessionRecorder

__all__ = [
    "HEADERS_LOGGED",
    "OpenAICallsCarrier",
    "SipCall",
    "caller_number",
    "untrusted",
    "watch_limits",
]

logger = logging.getLogger("telephony.sip")

GOODBYE_MARGIN_S = 2.0  # no output_audio_buffer events: the goodbye plays on after it is done
WATCH_INTERVAL_S = 0.25
CAP_SAFETY_S = 5.0  # beyond HANGUP_GRACE: the goodbye is over before the cap
IDLE_ENDS = "Nobody has said anything for a while, so the call is ending now."
TIME_ENDS = "This call has reached its time limit and is ending now."
HEADERS_LOGGED = ("From", "To", "Call-ID", "Diversion")


def untrusted(value: str, limit: int = 200) -> str:
    """SIP header text comes from the caller's side: printable characters only, bounded."""
    return "".join(ch for ch in value if ch.isprintable())[:limit]


def caller_number(from_header: str) -> str:
    """The caller's number in a SIP ``From`` header (``"Ada" <sip:+15550001111@host>`` →
    ``+15550001111``); '' when it names none."""
    match = re.search(r"<?(?:sip|tel):(\+?[0-9]{3,15})(?:[@;>]|$)", from_header)
    return match.group(1) if match else ""


class OpenAICallsCarrier:
    """The carrier steps of a SIP call (:class:`telephony.control.Carrier`): OpenAI plays
    the audio and says when it stopped (``output_audio_buffer.stopped``); hang-up and
    transfer are the Realtime Calls API's ``hangup`` and ``refer``.

    Args:
        client: the OpenAI client (Calls API).
        call_id: the SIP call's id.
        events: the session's recorder (responses, the output buffer's events).
        record: writes a call-log record.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        call_id: str,
        events: SessionRecorder,
        record: Callable[..., Any],
    ) -> None:
        self._client = client
        self._call_id = call_id
        self._events = events
        self._record = record

    async def heard(self, started_before: int, grace_s: float) -> str:
        """Wait until the caller has heard the goodbye (a response begun after
        ``started_before`` responses), at most ``grace_s`` seconds; returns what ended the
        wait: ``output_audio_buffer.stopped`` (OpenAI says its audio finished playing),
        ``margin`` (no such event: ``GOODBYE_MARGIN_S`` after it was generated) or
        ``hangup_grace``."""
        events = self._events
        deadline = time.monotonic() + grace_s

        async def until(done: Callable[[], bool]) -> bool:
            while not done():
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.02)
            return True

        if not await until(lambda: events.responses_idle_since(started_before)):
            return "hangup_grace"
        goodbye = events.last_response_id
        silent_since = time.monotonic()

        def heard() -> bool:  # stopped names the goodbye, or nothing plays for the margin
            nonlocal silent_since
            if goodbye in events.played_out:
                return True
            if events.playing:
                silent_since = time.monotonic()
            return time.monotonic() - silent_since >= GOODBYE_MARGIN_S

        if not await until(heard):
            return "hangup_grace"
        return "output_audio_buffer.stopped" if goodbye in events.played_out else "margin"

    via = "openai_calls_api"  # ``call.hangup``'s ``via``

    def _api(self) -> Any:
        """The REST resource with ``hangup`` and ``refer`` for this call."""
        return self._client.realtime.calls

    async def hang_up(self) -> str:
        try:
            await self._api().hangup(self._call_id)
        except NotFoundError:
            return f"{self.via} (call already ended)"
        except Exception as exc:
            return f"failed: {type(exc).__name__}"
        return self.via

    async def transfer(self, destination: str, target: str) -> dict[str, Any] | str:
        uri = target if target.startswith("sip:") else f"tel:{target}"
        try:
            await self._api().refer(self._call_id, target_uri=uri)
        except Exception as exc:
            self._record("twilio.error", action="refer", error=describe_error(exc))
            return "The transfer failed; apologise and offer to help instead."
        return {"target": uri, "via": "refer"}


async def watch_limits(
    control: CallController,
    limits: CallLimits,
    hangup_grace: float,
    started: float,
    expires_at: Callable[[], float],
    busy: Callable[[], bool],
    last_activity: Callable[[], float],
) -> None:
    """A SIP call's time limits, on both backends: the agent says a short goodbye and the call
    hangs up at ``MAX_CALL_DURATION`` after ``started``, after ``IDLE_TIMEOUT`` since
    ``last_activity`` (while not ``busy``), and within ``MODEL_RENEWAL_MARGIN`` of
    ``expires_at`` (at a moment not ``busy``; at the latest ``hangup_grace`` + 5 s before).
    Times are ``time.monotonic()``. Returns once a hang-up or transfer is under way."""
    cap_force_s = hangup_grace + CAP_SAFETY_S
    while not control.ending:
        await asyncio.sleep(WATCH_INTERVAL_S)
        now = time.monotonic()
        to_cap = expires_at() - now
        if now - started >= limits.max_duration:
            await control.end_politely(
                "max_duration", TIME_ENDS, by="watchdog", to_cap=round(min(to_cap, 1e9), 1)
            )
        elif to_cap <= limits.renewal_margin and (not busy() or to_cap <= cap_force_s):
            await control.end_politely(
                "session_cap", TIME_ENDS, by="watchdog", to_cap=round(to_cap, 1)
            )
        elif not busy() and now - last_activity() >= limits.idle_timeout:
            await control.end_politely("idle_timeout", IDLE_ENDS, by="watchdog")


class SipCall:
    """One SIP call's sideband session: greeting, tools, the call log, and a watchdog for its
    time limits. Call :meth:`run` once. Call control is :attr:`control` (the shared core, with
    :class:`OpenAICallsCarrier`)."""

    def __init__(
        self,
        call_id: str,
        sip_headers: Mapping[str, str],
        *,
        client: AsyncOpenAI,
        open_session: Callable[[CallContext], Awaitable[Any]],
        features: CallFeatures,
        limits: CallLimits,
        logs: CallLogs,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.call_id = call_id
        self._headers = sip_headers
        self._client = client
        self._open_session = open_session
        self._features = features
        self._limits = limits
        self._log = logs.open(call_id)
        self._events = SessionRecorder(self._log.write)
        self._started = time.monotonic()
        self._ended = asyncio.Event()
        self._end_reason: str | None = None
        carrier = OpenAICallsCarrier(client, call_id, self._events, self._log.write)
        self.control = CallController(features, carrier, self._log.write, self._events, self.end)
        self.control.call_id = call_id
        self.control.caller_number = caller_number(sip_headers.get("From", ""))
        self._extra = extra or {}
        self._expires_at = self._started + limits.session_max  # until session.created says

    async def run(self) -> None:
        """Attach, greet, record events until the call ends; always writes one ``call.end``."""
        reason = "unknown"
        try:
            self._log.write(
                "sip.incoming",
                **{"from": self._headers.get("From")},
                to=self._headers.get("To"),
                sip_headers={k: v for k, v in self._headers.items() if k in HEADERS_LOGGED},
                **self._extra,
            )
            reason = await self._attach_and_run()
        except asyncio.CancelledError:
            reason = "server_shutdown"
            raise
        except Exception as exc:
            logger.exception("SIP call %s: unexpected error", self.call_id)
            self._log.write("error", where="sip", error=describe_error(exc))
            reason = "internal_error"
        finally:
            await self.control.stop()
            self._log.write(
                "call.end",
                reason=self._end_reason or reason,
                duration_s=round(time.monotonic() - self._started, 3),
                path="sip",
                model_errors=self._events.model_errors,
            )
            self._log.close()

    async def _attach_and_run(self) -> str:
        self._log.write("model.connecting")
        t0 = time.monotonic()
        try:
            session = await self._open_session(CallContext(self.call_id, control=self.control))
            async with asyncio.timeout(self._limits.connect_timeout):
                await session.enter()
        except Exception as exc:
            self._log.write("model.connect_failed", error=describe_error(exc))
            return "model_connect_failed"
        self._log.write("model.connected", connect_ms=round((time.monotonic() - t0) * 1000, 1))
        self.control.session = session
        try:
            if self._features.greeting:
                await greet(session, self._features.greeting)
                self._log.write("greeting.requested", text=self._features.greeting)
            events = asyncio.create_task(self._record_events(session))
            ended = asyncio.create_task(self._ended.wait())
            watchdog = asyncio.create_task(self._watchdog(), name="sip-watchdog")
            done, _ = await asyncio.wait({events, ended}, return_when=asyncio.FIRST_COMPLETED)
            for task in (events, ended, watchdog):
                task.cancel()
            await asyncio.gather(events, ended, watchdog, return_exceptions=True)
            if events in done and not events.cancelled() and events.exception() is not None:
                return "model_error"
            return "call_ended" if events in done else "ended_by_us"
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._limits.close_timeout):
                    await session.close()

    async def _record_events(self, session: Any) -> None:
        try:
            async for event in session:
                self._events.on_event(event)
                raw = server_event(event)
                expires = session_expires_at(raw) if raw is not None else None
                if expires is not None:
                    self._expires_at = time.monotonic() + (expires - time.time())
        except Exception as exc:
            self._log.write("model.error", where="session", error=describe_error(exc))
            raise

    def end(self, reason: str) -> None:
        """End our side of the call (after hang-up, transfer, or shutdown)."""
        self._end_reason = self._end_reason or reason
        self._ended.set()

    # ---------------------------------------------------------------- time limits

    async def _watchdog(self) -> None:
        """The call's time limits (:func:`watch_limits`), the cap from ``session.created``."""
        events = self._events
        await watch_limits(
            self.control,
            self._limits,
            self._features.hangup_grace,
            self._started,
            lambda: self._expires_at,
            lambda: events.busy,
            lambda: events.last_activity,
        )
