"""The services every route shares, built once per app from the settings.

:class:`Services` lives on ``app.state.services`` and reaches the routes through the
:func:`telephony.routes.deps.get_services` dependency.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.realtime import RealtimeAgent
from openai import AsyncOpenAI

from .admission import TRY_AGAIN_LATER, Admission, CallRegistry, RateLimit, Refused, StreamTokens
from .agent.default import build_default_agent, load_agent
from .agent.live import LiveBackend
from .agent.local import LocalRealtimeModel, load_local_stack
from .agent.sessions import ModelFactory, SessionFactory, choose_backend
from .audio.hold import load_hold_sound
from .bridge import (
    FINAL_CALL_STATUSES,
    LiveMediaCall,
    MediaStreamCall,
    PrewarmPool,
    TwilioSocket,
)
from .bridge.prewarm import Prewarmed
from .config import CallFeatures, CallLimits, Settings
from .console import CallIndex, open_index, show_number, with_index
from .fleet import FleetState, LocalState
from .fleet.redis_state import RedisState
from .fleet.seal import ControlSeal
from .observability.call_log import CallLogs
from .observability.prometheus import ServiceMetrics
from .observability.ratelimit import LogLimiter
from .observability.tracing import CallTraces, tracing_wanted
from .remote_control import RemoteControl
from .sip import SipCalls
from .transfers import TransferLegs
from .twilio.ids import is_call_sid, is_stream_sid
from .twilio.media_stream import Start
from .twilio.rest import TwilioCalls
from .twilio.signatures import SignatureChecker
from .twilio.trial import trial_key

__all__ = ["Services", "build_services"]

logger = logging.getLogger("telephony.services")
STATE_FILE = ".state.sqlite3"
_refusal_logger = logging.getLogger("telephony.routes")


@dataclass
class Services:
    """What the routes work with.

    Attributes:
        settings: the configuration.
        backend: which model answers: ``openai``, ``local``, ``custom`` or ``live``.
        sessions: builds each call's ``RealtimeSession``.
        registry: capacity, stream tokens, calls in progress, draining.
        checker: Twilio signature checks; None without ``TWILIO_AUTH_TOKEN``.
        rest: Twilio REST access to live calls; None without account SID and token.
        metrics: Prometheus metrics.
        limits / features: what every call is allowed and does.
        sip: the SIP path; None without ``OPENAI_WEBHOOK_SECRET``.
        state: the fleet state (Redis with ``REDIS_URL``, else this process only).
        logs: opens call logs tagged with this instance.
        control: hang-up and transfer from any instance.
        console: the console's call index; None without ``CONSOLE_TOKEN``.
        prewarm: model sessions opened at the webhook (``MODEL_PREWARM``); None when off.
        transfers: warm transfers' legs, briefings and decisions.
    """

    settings: Settings
    backend: str
    sessions: SessionFactory
    registry: CallRegistry
    checker: SignatureChecker | None
    rest: TwilioCalls | None
    metrics: ServiceMetrics
    limits: CallLimits
    features: CallFeatures
    sip: SipCalls | None
    state: FleetState
    logs: CallLogs
    control: RemoteControl
    dial_rate: RateLimit
    refusals: LogLimiter = field(default_factory=lambda: LogLimiter(_refusal_logger))
    console: CallIndex | None = None
    prewarm: PrewarmPool | None = None
    transfers: TransferLegs | None = None
    live: LiveBackend | None = None  # REALTIME_BACKEND=live: calls on GPT-Live
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def trial(self) -> bool:
        """Trial mode: no ``TWILIO_AUTH_TOKEN``; only requests signed with this machine's
        trial key (local simulated calls) are taken."""
        return self.checker is not None and self.settings.twilio_auth_token is None

    async def admit(self, start: Start, call: MediaStreamCall) -> dict[str, Any]:
        """The admission check at ``start``, counted when it refuses: a well-formed CallSid
        (and our AccountSid when ``TWILIO_ACCOUNT_SID`` is set), then the registry's checks.
        The call is then reachable by remote call control. Returns fields for ``stream.start``.

        Raises:
            Refused: malformed or foreign ids, a bad stream token, a call already streaming
                (1008); no room here or in the fleet (1013).
        """
        self.registry.awaiting_start.pop(call, None)
        try:
            if not is_call_sid(start.call_sid) or not is_stream_sid(start.stream_sid):
                raise Refused("malformed CallSid or StreamSid")
            account = self.settings.twilio_account_sid
            if account and start.start.account_sid != account:
                raise Refused("AccountSid is not TWILIO_ACCOUNT_SID")
            if self.transfers is not None:  # a warm transfer's person leg, or may make one
                await self.transfers.admit(start, call)
            admission: Admission = await self.registry.admit(
                start.call_sid, start.custom_parameters.get("token")
            )
        except Refused as refused:
            reason = "busy" if refused.code == TRY_AGAIN_LATER else "stream_token"
            self.metrics.rejected.labels(reason=reason).inc()
            raise
        self.registry.live[start.call_sid] = call
        return {"degraded": True} if admission.degraded else {}

    async def apologise(self, call_sid: str, reason: str) -> str:
        """We end the call (model failure, shutdown, time limit): say so over the REST API.
        Returns how, for the call log."""
        if self.rest is None:
            return "none (no Twilio REST credentials; stream closed)"
        settings = self.settings
        text = settings.apology_message if reason.startswith("model") else settings.goodbye_message
        said = await self.rest.say_and_hang_up(call_sid, text)
        return "twilio_rest" if said else "twilio_rest (call already ended)"

    async def prewarm_call(self, call_sid: str, hold_s: float | None = None) -> float | None:
        """Open ``call_sid``'s model session now, ahead of its stream (``MODEL_PREWARM``);
        returns how long it is held when it opened here (the caller writes ``prewarm``
        ``opened``), else None. In a fleet, not when another instance holds one already (a
        dialled call answered elsewhere); this instance is noted as the holder before the
        TwiML goes out, so that a stream or a final status reaching another instance finds it
        and closes it at once."""
        if self.prewarm is None or call_sid in self.prewarm:
            return None
        if self.state.shared and await self.control.prewarmed_elsewhere(call_sid):
            return None
        hold = hold_s or self.prewarm.hold_s
        if not self.prewarm.open(call_sid, hold):
            return None
        if self.state.shared:
            await self.control.note_prewarm(call_sid, hold)
        return hold

    def end_prewarm(self, call_sid: str, status: str) -> None:
        """A call status came: a final one (busy, no-answer, …) closes the call's pre-warmed
        session, here or on the instance holding it."""
        if self.prewarm is None or status not in FINAL_CALL_STATUSES:
            return
        reason = f"call status {status}"
        if not self.prewarm.discard(call_sid, reason) and self.state.shared:
            self._spawn(self.control.discard_prewarm(call_sid, reason))

    async def take_prewarmed(self, call_sid: str) -> Prewarmed | None:
        """The session pre-warmed here for the stream that just started, if any. A stream
        that finds none here has the one another instance may hold closed (in the
        background: the call connects as it would without pre-warming)."""
        if self.prewarm is None:
            return None
        if call_sid in self.prewarm:
            return await self.prewarm.take(call_sid)
        if self.state.shared:
            self._spawn(self.control.discard_prewarm(call_sid, "stream on another instance"))
        return None

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def media_call(
        self, socket: TwilioSocket, live: bool = False
    ) -> MediaStreamCall | LiveMediaCall:
        """The bridge for one media socket: on GPT-Live for ``live`` (``LIVE_NUMBERS``) too."""
        if self.live is not None and (live or self.backend == "live"):
            live = (self.live.plan, self.live.session)
            return LiveMediaCall(socket, *live, self.logs, self.limits, self.admit,
                                 self.apologise, self.features, twilio=self.rest,
                                 on_frame=self.metrics.frame,
                                 echo_gate=self.live.options.echo_gate)  # fmt: skip
        return MediaStreamCall(
            socket,
            self.sessions.open,
            self.logs,
            self.limits,
            admit=self.admit,
            on_model_failure=self.apologise,
            features=self.features,
            twilio=self.rest,
            on_frame=self.metrics.frame,
            backend=self.backend,
            prewarmed=self.take_prewarmed if self.prewarm is not None else None,
        )


def build_services(
    settings: Settings,
    *,
    agent: RealtimeAgent | None = None,
    model_factory: ModelFactory | None = None,
    limits: CallLimits | None = None,
) -> Services:
    """Build every shared service from ``settings`` (see :func:`telephony.app.create_app`),
    one small builder each.

    Raises:
        ValueError: a bad ``AGENT``, or a ``HOLD_SOUND`` file under 20 ms.
        OSError: ``HOLD_SOUND`` cannot be read.
        telephony.agent.local.LocalModelUnavailable: the offline model's extra is missing.
    """
    features = _call_features(settings)
    limits = limits or settings.call_limits()
    backend, sessions = _backend(settings, features, agent, model_factory)
    state = _fleet_state(settings)
    metrics = _metrics(state, lambda: registry.calls)
    registry = _registry(settings, state, metrics)
    console = open_index(settings.call_log_dir) if settings.console_token is not None else None
    traces = CallTraces.from_environment() if tracing_wanted() else None
    logs = CallLogs(
        settings.call_log_dir, settings.instance_id, with_index(metrics.observe, console), traces
    )
    checker, rest = _twilio(settings)
    wants_live = backend == "live" or bool(settings.live_number_set)
    live = LiveBackend.from_settings(settings, sessions.agent) if wants_live else None
    sip = _sip_calls(settings, sessions, features, limits, registry, logs)
    prewarm = _prewarm(settings, sessions, features, limits, registry, logs)
    control = _remote_control(settings, registry, state, logs, rest, sip, features, prewarm)
    transfers = TransferLegs(settings, features, rest, state, control, logs)
    if sip is not None and transfers.hands_off:
        sip.hand_off = transfers.hand_off
    if sip is not None and backend == "live":
        sip.live = live  # on live, GPT-Live's webhook accepts SIP calls
    return Services(
        settings,
        backend,
        sessions,
        registry,
        checker,
        rest,
        metrics,
        limits,
        features,
        sip,
        state,
        logs,
        control,
        RateLimit(settings.dial_rate_limit),
        console=console,
        prewarm=prewarm,
        transfers=transfers,
        live=live,
    )


def _prewarm(
    settings: Settings,
    sessions: SessionFactory,
    features: CallFeatures,
    limits: CallLimits,
    registry: CallRegistry,
    logs: CallLogs,
) -> PrewarmPool | None:
    """Sessions opened at the webhook (``MODEL_PREWARM``; never on GPT-Live, which bills
    them), each in a slot of ``MAX_CONCURRENT_CALLS`` (with the calls in progress), recorded
    as ``prewarm``."""
    if not settings.model_prewarm or settings.realtime_backend == "live":
        return None

    def note(call_sid: str, fields: dict[str, Any]) -> None:
        with logs.open(call_sid, observe=False) as log:
            log.write("prewarm", **fields)

    pool = PrewarmPool(
        sessions.open,
        features.greeting,
        connect_timeout_s=limits.connect_timeout,
        hold_s=settings.model_prewarm_timeout,
        close_timeout_s=limits.close_timeout,
        room=lambda: len(pool) + len(registry.calls) < registry.max_calls,
        note=note,
    )
    return pool


def _call_features(settings: Settings) -> CallFeatures:
    """What every call does, with the hold sound read once, at start."""
    features = settings.call_features()
    features.hold_sound = load_hold_sound(settings.hold_sound)
    return features


def _backend(
    settings: Settings,
    features: CallFeatures,
    agent: RealtimeAgent | None,
    model_factory: ModelFactory | None,
) -> tuple[str, SessionFactory]:
    """Which model answers (``openai``, ``local`` or ``custom``), and the factory of each
    call's session with the agent (``AGENT``, or the default one)."""
    if agent is None:
        agent = (
            load_agent(settings.agent)
            if settings.agent
            else build_default_agent(features.transfer_targets.keys())
        )
    backend = "custom" if model_factory is not None else choose_backend(settings)
    if backend == "local":
        # raises LocalModelUnavailable with what to install
        stack = load_local_stack(settings.local_stt_window_s)
        model_factory = functools.partial(
            LocalRealtimeModel,
            stack,
            silence_ms=settings.local_turn_silence_ms,
            end_ms=settings.local_turn_end_ms,
        )
    return backend, SessionFactory(settings, agent, model_factory)


def _metrics(state: FleetState, calls: Callable[[], Any]) -> ServiceMetrics:
    """Prometheus metrics; the fleet's gauges when the state is shared."""
    return ServiceMetrics(
        active_calls=lambda: len(calls()),
        redis_up=(lambda: state.up) if state.shared else None,
        fleet_active=(lambda: state.fleet_active) if state.shared else None,
    )


def _registry(settings: Settings, state: FleetState, metrics: ServiceMetrics) -> CallRegistry:
    """Capacity, stream tokens, calls in progress and draining, here and in the fleet."""
    secret = settings.stream_token_secret
    return CallRegistry(
        settings.max_concurrent_calls,
        StreamTokens(secret.get_secret_value().encode() if secret else None),
        state,
        fleet_max=settings.fleet_max_calls,
        lease_s=settings.fleet_lease,
        drain_grace_s=settings.drain_lb_grace,
        answer_ttl_s=settings.max_call_duration + 600,
        on_degraded=lambda step: metrics.degraded.labels(step=step).inc(),
    )


def _twilio(settings: Settings) -> tuple[SignatureChecker | None, TwilioCalls | None]:
    """Twilio's signature checks (with ``TWILIO_AUTH_TOKEN``) and REST access to live calls
    (with the account SID too). Without the token: trial mode, requests signed with this
    machine's trial key (:mod:`telephony.twilio.trial`), or none in ``ALLOW_UNSIGNED`` mode."""
    token, shared_key = settings.twilio_auth_token, settings.twilio_webhook_shared_key
    if token is None:
        if settings.allow_unsigned:
            return None, None
        return SignatureChecker(trial_key(settings.call_log_dir)), None
    checker = SignatureChecker(
        token.get_secret_value(),
        shared_key.get_secret_value() if shared_key else None,
        settings.twilio_webhook_shared_key_id,
    )
    rest = (
        TwilioCalls(
            settings.twilio_account_sid, token.get_secret_value(), settings.twilio_api_base_url
        )
        if settings.twilio_account_sid
        else None
    )
    return checker, rest


def _remote_control(
    settings: Settings,
    registry: CallRegistry,
    state: FleetState,
    logs: CallLogs,
    rest: TwilioCalls | None,
    sip: SipCalls | None,
    features: CallFeatures,
    prewarm: PrewarmPool | None,
) -> RemoteControl:
    """Hang-up and transfer of any call in the fleet, from any instance; it answers the
    fleet's control messages for this instance's calls."""
    control = RemoteControl(
        registry,
        state,
        logs,
        rest,
        sip,
        features.transfer_targets,
        settings.control_timeout,
        show_number=functools.partial(show_number, show=settings.console_show_numbers),
        prewarm=prewarm,
    )
    state.on_control = control.on_message
    return control


def _fleet_state(settings: Settings) -> FleetState:
    """Redis with ``REDIS_URL``; else this process alone."""
    if settings.redis_url is None or settings.stream_token_secret is None:  # (checked: both)
        # what a restart must not forget (used stream tokens, answered CallSids, SIP
        # deliveries), in a file beside the call logs
        settings.call_log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return LocalState(settings.instance_id, settings.call_log_dir / STATE_FILE)
    return RedisState(
        settings.redis_url.get_secret_value(),
        settings.instance_id,
        lease_s=settings.fleet_lease,
        heartbeat_s=settings.fleet_heartbeat,
        seal=ControlSeal(settings.stream_token_secret.get_secret_value().encode()),
        warn=LogLimiter(logging.getLogger("telephony.fleet")).warning,
    )


def _sip_calls(
    settings: Settings,
    sessions: SessionFactory,
    features: CallFeatures,
    limits: CallLimits,
    registry: CallRegistry,
    logs: CallLogs,
) -> SipCalls | None:
    """The SIP path, when ``OPENAI_WEBHOOK_SECRET`` is set."""
    if not settings.openai_webhook_secret:
        return None
    key = settings.openai_api_key
    client = AsyncOpenAI(
        api_key=key.get_secret_value() if key else "unset",
        base_url=settings.openai_base_url,
        webhook_secret=settings.openai_webhook_secret.get_secret_value(),
    )
    return SipCalls(client, sessions, features, limits, logs, registry)
