"""Service configuration: one settings object, read once at start-up from the environment
and an optional ``.env`` file (pydantic-settings), and the per-call slices of it that the call
paths take (:class:`CallLimits`, :class:`CallFeatures`).

Every variable is documented in the README's configuration table. Malformed values, and unknown
keys in ``.env``, fail at start-up with :class:`ConfigError`, whose message names the variable.
Imports nothing of the package.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_CHARS = 24  # bearer tokens: DIAL_API_TOKEN, METRICS_TOKEN
MIN_SECRET_CHARS = 32  # HMAC secrets: STREAM_TOKEN_SECRET, TWILIO_WEBHOOK_SHARED_KEY


class ConfigError(ValueError):
    """Raised when the configuration cannot be loaded; the message names each bad variable."""


@dataclass
class CallLimits:
    """Limits of one call, in seconds (both call paths).

    Args:
        start_timeout: a media socket that sends no ``start`` within this is closed with 1008.
        connect_timeout: opening the model session.
        close_timeout: closing the model session (OpenAI may drop without a close frame).
        idle_timeout: end the call after this long without caller audio.
        max_duration: end the call this long after ``start``.
        audio_ahead: caller audio may run this far ahead of real time (more is dropped);
            0: no limit (replays faster than real time).
        session_max: a model session's life when the model does not say (``expires_at``).
        renewal_margin: renew a model session this long before it expires.
        history_tokens: the conversation replayed into a new session, at most (about 4
            characters a token).
    """

    start_timeout: float = 5.0
    connect_timeout: float = 15.0
    close_timeout: float = 5.0
    idle_timeout: float = 30.0
    max_duration: float = 3600.0
    audio_ahead: float = 1.0
    session_max: float = 3600.0
    renewal_margin: float = 120.0
    history_tokens: int = 16_000


PRICES_SOURCE = "OpenAI gpt-realtime-1.5 model page and Twilio US voice list prices, 2026-11-29"
TOKEN_KINDS = (
    "text_input",
    "text_cached_input",
    "audio_input",
    "audio_cached_input",
    "text_output",
    "audio_output",
)


@dataclass(frozen=True)
class Prices:
    """USD per million tokens of each kind, and per carrier minute (billed in whole minutes,
    as Twilio bills). The defaults are :data:`PRICES_SOURCE`; ``PRICES`` overrides any."""

    text_input: float = 4.00
    text_cached_input: float = 0.40
    audio_input: float = 32.00
    audio_cached_input: float = 0.40
    text_output: float = 16.00
    audio_output: float = 64.00
    carrier_inbound_per_minute: float = 0.0085
    carrier_outbound_per_minute: float = 0.0130

    @classmethod
    def with_overrides(cls, overrides: dict[str, float]) -> Prices:
        """The defaults with some replaced. Raises ValueError on an unknown name or a
        negative price."""
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown prices {sorted(unknown)}; known: {sorted(names)}")
        if any(value < 0 for value in overrides.values()):
            raise ValueError("prices cannot be negative")
        return replace(cls(), **{k: float(v) for k, v in overrides.items()})

    def model_usd(self, tokens: dict[str, int]) -> float:
        """The model's share for ``tokens`` (kinds of :data:`TOKEN_KINDS`)."""
        table = asdict(self)
        return sum(tokens.get(kind, 0) * table[kind] for kind in TOKEN_KINDS) / 1_000_000

    def carrier_usd(self, seconds: float, outbound: bool) -> float:
        """The carrier's share for a call of ``seconds`` (each started minute billed)."""
        minutes = math.ceil(max(0.0, seconds) / 60)
        rate = self.carrier_outbound_per_minute if outbound else self.carrier_inbound_per_minute
        return minutes * rate

    def call_cost(self, tokens: dict[str, int], seconds: float, outbound: bool) -> dict[str, Any]:
        """``{"model": …, "carrier": …, "total": …}`` in USD, rounded to 1/10000 cent."""
        model = self.model_usd(tokens)
        carrier = self.carrier_usd(seconds, outbound)
        return {
            "model": round(model, 6),
            "carrier": round(carrier, 6),
            "total": round(model + carrier, 6),
        }


@dataclass
class BargeInRules:
    """When caller speech over the agent is an interruption (see :mod:`telephony.bridge.barge_in`).

    Args:
        pause_ms: caller speech (ms, by our own detector) after which the agent's audio pauses.
        min_speech_ms: caller speech that makes an interruption on its own.
        backchannels: words and phrases (lower case) that are listening, not taking the turn.
        echo_cancellation: cancel the agent's own voice in the caller's audio (WebRTC AEC3)
            before anything hears it.
    """

    pause_ms: int = 200
    min_speech_ms: int = 600
    backchannels: frozenset[str] = field(default_factory=frozenset)
    echo_cancellation: bool = False


@dataclass
class CallFeatures:
    """What a call does beyond bridging audio (both call paths).

    Args:
        greeting: said by the agent as soon as the call starts ('' for none).
        dtmf_timeout: seconds after the last key before collected digits go to the agent.
        hangup_grace: longest wait (seconds) for the goodbye to play before ``end_call`` hangs up.
        transfer_targets: allowed transfer destinations, ``{name: +E.164 or sip: URI}``.
        barge_in: the barge-in guard's rules; None: the model decides barge-in itself.
        prices: what tokens and carrier minutes cost, for ``call.end``'s ``cost_usd``.
        hold_delay: seconds a tool may run before the caller hears ``hold_sound``; None: never.
        hold_sound: the hold loop, μ-law 8 kHz, whole 20 ms frames (the services load it
            from ``HOLD_SOUND`` once).
        record: write a stereo recording next to each call's log.
    """

    greeting: str = ""
    dtmf_timeout: float = 2.0
    hangup_grace: float = 10.0
    transfer_targets: dict[str, str] = field(default_factory=dict)
    barge_in: BargeInRules | None = None
    prices: Prices = field(default_factory=Prices)
    hold_delay: float | None = None
    hold_sound: bytes = b""
    record: bool = False


class Settings(BaseSettings):
    """All settings of the service. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        case_sensitive=False,
    )

    openai_api_key: SecretStr | None = Field(
        default=None, description="OpenAI API key used to open Realtime sessions."
    )
    realtime_backend: Literal["auto", "openai", "local"] = Field(
        default="auto",
        description="auto: OpenAI with OPENAI_API_KEY, else the embedded offline model.",
    )
    openai_realtime_model: str = Field(
        default="gpt-realtime", min_length=1, description="Realtime model name."
    )
    openai_realtime_url: str | None = Field(
        default=None,
        description="Realtime WebSocket URL, passed verbatim as the SDK's model_config['url'].",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="OpenAI REST base URL (default https://api.openai.com/v1); tests: a stand-in.",
    )
    openai_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret of the OpenAI webhook (SIP calls); unset: off."
    )
    public_url: str | None = Field(
        default=None,
        description="Public https base URL Twilio reaches (e.g. the ngrok URL).",
    )
    twilio_account_sid: str | None = Field(default=None, description="Twilio Account SID (AC…).")
    twilio_auth_token: SecretStr | None = Field(default=None, description="Twilio auth token.")
    twilio_webhook_shared_key: SecretStr | None = Field(
        default=None,
        description="Secret of a Twilio webhook SharedKey (signatures named by "
        "X-Twilio-Webhooks-Signature-Settings); unset: only auth-token signatures.",
    )
    twilio_webhook_shared_key_id: str | None = Field(
        default=None,
        max_length=100,
        description="Id of that SharedKey; when set, a signature naming another key is refused.",
    )
    call_log_dir: Path = Field(default=Path("./calls"), description="Per-call JSONL logs.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Bind port.")
    agent: str | None = Field(
        default=None,
        description="Your own RealtimeAgent as 'module:attribute' (an agent or a factory).",
    )
    voice: str = Field(default="marin", min_length=1, description="Realtime voice name.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Server log level."
    )
    allow_unsigned: bool = Field(
        default=False,
        description="Development mode: accept unsigned Twilio requests (loopback HOST only).",
    )
    stream_token_secret: SecretStr | None = Field(
        default=None, description="Secret for per-call stream tokens; random per process if unset."
    )
    max_concurrent_calls: int = Field(default=20, ge=1, description="Calls beyond get busy.")
    idle_timeout: float = Field(
        default=30.0, gt=0, description="End a call after this many seconds without caller audio."
    )
    max_call_duration: float = Field(
        default=3600.0, gt=0, description="End a call after this many seconds."
    )
    model_session_max: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a model session lasts when it does not say (OpenAI 3600, Azure 1800).",
    )
    model_renewal_margin: float = Field(
        default=120.0,
        gt=0,
        description="Renew a model session this many seconds before it expires.",
    )
    model_history_tokens: int = Field(
        default=16_000, ge=500, description="Conversation replayed into a new session, at most."
    )
    model_silence_timeout: float = Field(
        default=0.5,
        gt=0,
        description="Ping the model socket after this many seconds with nothing received.",
    )
    model_ping_timeout: float = Field(
        default=1.0, gt=0, description="A model socket with no pong this long is dropped."
    )
    model_close_timeout: float = Field(
        default=1.0, gt=0, description="Seconds a model socket's close handshake may take."
    )
    audio_ahead_limit: float = Field(
        default=1.0,
        ge=0,
        description="Seconds caller audio may run ahead of real time; 0: no limit (replays).",
    )
    twilio_api_base_url: str | None = Field(
        default=None, description="Override of https://api.twilio.com (a stand-in, in tests)."
    )
    apology_message: str = Field(
        default="Sorry, we are having technical difficulties. Please call again later. Goodbye.",
        description="Said (via the REST API) when the model fails for good.",
    )
    goodbye_message: str = Field(
        default="Sorry, this call has to end now. Please call again later. Goodbye.",
        description="Said (via the REST API) when we end a call: shutdown or time limit.",
    )
    greeting: str = Field(
        default="Hello! Thanks for calling. How can I help you today?",
        description="What the agent says first, as soon as the stream starts; empty: off.",
    )
    dtmf_timeout: float = Field(
        default=2.0, gt=0, description="Seconds after the last key before digits go to the agent."
    )
    hangup_grace: float = Field(
        default=10.0, gt=0, description="Longest wait for the goodbye to play before hanging up."
    )
    turn_detection: Literal["server_vad", "semantic_vad"] = Field(
        default="server_vad", description="The Realtime session's turn detection."
    )
    vad_threshold: float = Field(
        default=0.5, ge=0, le=1, description="server_vad: speech probability that starts speech."
    )
    vad_prefix_padding_ms: int = Field(
        default=300, ge=0, le=2000, description="server_vad: audio kept before detected speech."
    )
    vad_silence_duration_ms: int = Field(
        default=500, ge=100, le=5000, description="server_vad: silence that ends the caller's turn."
    )
    vad_eagerness: Literal["low", "medium", "high", "auto"] = Field(
        default="auto", description="semantic_vad: how soon the model takes the turn."
    )
    input_noise_reduction: Literal["near_field", "far_field", "off"] = Field(
        default="near_field", description="The model's input noise reduction (a handset is near)."
    )
    barge_in_guard: bool = Field(
        default=True,
        description="We decide interruptions (echo, backchannels, noise do not interrupt).",
    )
    barge_in_pause_ms: int = Field(
        default=200, ge=20, le=2000, description="Caller speech that pauses the agent's audio."
    )
    barge_in_min_speech_ms: int = Field(
        default=600, ge=100, le=5000, description="Caller speech that interrupts on its own."
    )
    backchannel_words: str = Field(
        default=(
            "mm-hm,mhm,mm,hmm,uh-huh,uh huh,yeah,yes,yep,yup,okay,ok,right,sure,alright,"
            "all right,i see,got it,ah,oh,cool,great,nice,good"
        ),
        description="Comma-separated phrases that are listening, not taking the turn.",
    )
    echo_cancellation: bool = Field(
        default=False,
        description="Cancel the agent's own voice in caller audio (WebRTC AEC3, while it plays).",
    )
    console_token: SecretStr | None = Field(
        default=None,
        description="Turns the operator console (/console) on; at least 24 characters.",
    )
    console_show_numbers: bool = Field(
        default=False, description="The console shows whole phone numbers (else the last 4)."
    )
    record_calls: bool = Field(
        default=False,
        description="Write a stereo WAV per call next to its log (tell callers: see README).",
    )
    recording_disclosure: str = Field(
        default="This call may be recorded.",
        max_length=300,
        description="With RECORD_CALLS, said before the greeting; empty: nothing is said.",
    )
    local_turn_end_ms: int = Field(
        default=300,
        ge=100,
        le=3000,
        description="Offline model: quiet that ends a turn whose words sound finished.",
    )
    local_turn_silence_ms: int = Field(
        default=900,
        ge=200,
        le=5000,
        description="Offline model: quiet that ends any turn (a hesitation waits this long).",
    )
    local_stt_window_s: float = Field(
        default=10.0,
        ge=1,
        le=30,
        description="Offline model: Whisper's shortest encoder window (30 is Whisper's own).",
    )
    retention_days: float = Field(
        default=0,
        ge=0,
        description="Delete call logs and recordings older than this many days; 0: keep all.",
    )
    filler_delay: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a tool may run before the caller hears the hold sound; 0: never.",
    )
    hold_sound: Path | None = Field(
        default=None,
        description="Hold loop while a tool runs: headerless μ-law 8 kHz; unset: soft tones.",
    )
    outbound_amd: bool = Field(
        default=True,
        description="Detect who answers outbound calls (Twilio's asynchronous AMD).",
    )
    voicemail_message: str = Field(
        default=(
            "Hello, this is the automated assistant returning your call. Sorry we missed you. "
            "Please call us back when it suits you. Goodbye."
        ),
        min_length=1,
        max_length=500,
        description="What the agent says to an answering machine (POST /calls may override).",
    )
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="JSON: prices that differ from the defaults (see 'What each call cost').",
    )
    transfer_targets: str = Field(
        default="",
        description="Allowed transfer destinations: name=+E164 or name=sip:uri, comma-separated.",
    )
    twilio_from_number: str | None = Field(
        default=None, description="Caller ID (+E.164, a Twilio number) for outbound calls."
    )
    dial_api_token: SecretStr | None = Field(
        default=None, description="Bearer token for POST /calls (outbound); unset: endpoint off."
    )
    dial_allowed_prefixes: str = Field(
        default="",
        description="Outbound calls only to numbers starting with these (+1,+44); empty: any.",
    )
    dial_rate_limit: int = Field(
        default=30, ge=1, description="Outbound calls POST /calls may place per minute."
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token for GET /metrics; unset: /metrics is open."
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client may take to send a request's headers."
    )
    body_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client may take to send a request's body."
    )
    max_connections: int | None = Field(
        default=None,
        ge=8,
        description="Open connections at most (default: 4 x MAX_CONCURRENT_CALLS + 64).",
    )
    drain_timeout: float = Field(
        default=30.0, ge=0, description="On SIGTERM, let calls run this long before ending them."
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes of server.py (over 1 needs Redis)."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis:// URL of the fleet's shared state; unset: one instance."
    )
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="This instance's name in the fleet and in every call-log record.",
    )
    fleet_max_calls: int | None = Field(
        default=None, ge=1, description="Calls in progress across the fleet; unset: no fleet limit."
    )
    fleet_lease: float = Field(
        default=30.0, gt=0, description="Seconds a crashed instance's calls keep their fleet slots."
    )
    fleet_heartbeat: float = Field(
        default=5.0, gt=0, description="Seconds between an instance's re-assertions of its state."
    )
    drain_lb_grace: float = Field(
        default=10.0, ge=0, description="While draining, keep taking streams routed here this long."
    )
    control_timeout: float = Field(
        default=2.0, gt=0, description="Wait for a call's owner to act before the carrier API does."
    )

    @model_validator(mode="after")
    def _unsigned_only_on_loopback(self) -> Settings:
        if self.allow_unsigned and not _is_loopback(self.host):
            raise ValueError(
                "ALLOW_UNSIGNED=true is a development mode and needs a loopback HOST "
                f"(127.0.0.1, ::1 or localhost), not {self.host!r}"
            )
        if self.allow_unsigned and self.public_url:
            raise ValueError(
                "ALLOW_UNSIGNED=true is for local development only and cannot run with "
                "PUBLIC_URL (a public address): unset one of them"
            )
        if self.twilio_auth_token is not None and not self.public_url:
            raise ValueError(
                "PUBLIC_URL is required with TWILIO_AUTH_TOKEN: signatures are checked against "
                "the URL Twilio requested, which request headers must not decide"
            )
        return self

    @field_validator("dial_api_token", "metrics_token", "console_token")
    @classmethod
    def _long_enough_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("stream_token_secret", "twilio_webhook_shared_key")
    @classmethod
    def _long_enough_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("prices")
    @classmethod
    def _known_prices(cls, value: dict[str, float]) -> dict[str, float]:
        Prices.with_overrides(value)  # raises ValueError naming what is wrong
        return value

    @field_validator("dial_allowed_prefixes")
    @classmethod
    def _check_prefixes(cls, value: str) -> str:
        for prefix in filter(None, (p.strip() for p in value.split(","))):
            if not re.fullmatch(r"\+[1-9][0-9]{0,5}", prefix, re.ASCII):
                raise ValueError(f"{prefix!r} is not a + and 1 to 6 digits (such as +1 or +44)")
        return value

    @property
    def dial_prefixes(self) -> tuple[str, ...]:
        """``DIAL_ALLOWED_PREFIXES`` parsed (empty: any number)."""
        return tuple(p.strip() for p in self.dial_allowed_prefixes.split(",") if p.strip())

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for the log's redaction; never log them)."""
        values = [getattr(self, name) for name in type(self).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

    @property
    def connection_limit(self) -> int:
        """``MAX_CONNECTIONS``, or 4 per call allowed plus 64 for webhooks and health checks."""
        return self.max_connections or 4 * self.max_concurrent_calls + 64

    @model_validator(mode="after")
    def _fleet_needs_redis_and_a_shared_secret(self) -> Settings:
        if self.redis_url is not None and self.stream_token_secret is None:
            raise ValueError(
                "STREAM_TOKEN_SECRET is required with REDIS_URL: every instance must verify the "
                "stream tokens the others issue"
            )
        if self.workers > 1 and self.redis_url is None:
            raise ValueError(
                "WORKERS > 1 needs REDIS_URL: each worker is a separate process, and without "
                "shared state a stream that reaches another worker than its webhook is refused"
            )
        if self.fleet_lease <= 2 * self.fleet_heartbeat:
            raise ValueError("FLEET_LEASE must be more than twice FLEET_HEARTBEAT")
        return self

    @field_validator("openai_realtime_url")
    @classmethod
    def _check_realtime_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("ws", "wss"):
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s):// base URL such as https://abc.ngrok.app")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value.rstrip("/")

    @field_validator("twilio_account_sid")
    @classmethod
    def _check_account_sid(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", value, re.ASCII):
            raise ValueError("must look like AC followed by 32 hex digits")
        return value

    @field_validator("transfer_targets")
    @classmethod
    def _check_transfer_targets(cls, value: str) -> str:
        parse_transfer_targets(value)
        return value

    @property
    def transfer_destinations(self) -> dict[str, str]:
        """``TRANSFER_TARGETS`` parsed: ``{name: +E.164 or sip: URI}``."""
        return parse_transfer_targets(self.transfer_targets)

    def call_limits(self) -> CallLimits:
        """The per-call limits these settings set (``IDLE_TIMEOUT``, ``MAX_CALL_DURATION``)."""
        return CallLimits(
            idle_timeout=self.idle_timeout,
            max_duration=self.max_call_duration,
            audio_ahead=self.audio_ahead_limit,
            session_max=self.model_session_max,
            renewal_margin=self.model_renewal_margin,
            history_tokens=self.model_history_tokens,
        )

    def call_features(self) -> CallFeatures:
        """Greeting, keypad, hang-up and transfer behaviour for every call."""
        greeting = self.greeting
        if self.record_calls and self.recording_disclosure:
            greeting = f"{self.recording_disclosure} {greeting}".strip()
        return CallFeatures(
            greeting=greeting,
            dtmf_timeout=self.dtmf_timeout,
            hangup_grace=self.hangup_grace,
            transfer_targets=self.transfer_destinations,
            barge_in=self.barge_in_rules(),
            prices=Prices.with_overrides(self.prices),
            hold_delay=self.filler_delay or None,
            record=self.record_calls,
        )

    def barge_in_rules(self) -> BargeInRules | None:
        """``BARGE_IN_*``, ``BACKCHANNEL_WORDS``, ``ECHO_CANCELLATION``; None when
        ``BARGE_IN_GUARD`` is off (every speech start interrupts, as the model decides)."""
        if not self.barge_in_guard:
            return None
        words = (w.strip().lower() for w in self.backchannel_words.split(","))
        return BargeInRules(
            pause_ms=self.barge_in_pause_ms,
            min_speech_ms=self.barge_in_min_speech_ms,
            backchannels=frozenset(w for w in words if w),
            echo_cancellation=self.echo_cancellation,
        )

    @field_validator(
        "openai_api_key",
        "twilio_auth_token",
        "stream_token_secret",
        "dial_api_token",
        "openai_webhook_secret",
        "redis_url",
        "metrics_token",
        "twilio_webhook_shared_key",
        "console_token",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def parse_transfer_targets(text: str) -> dict[str, str]:
    """``"sales=+15551230000,support=sip:help@example.com"`` -> ``{name: destination}``.

    Raises:
        ValueError: an entry without ``=``, an empty name, or a destination that is neither an
            E.164 number (``+`` and 8-15 digits) nor a ``sip:`` URI.
    """
    targets: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, destination = (s.strip() for s in entry.partition("="))
        if not sep or not name:
            raise ValueError(f"transfer target {entry!r} is not name=destination")
        digits = destination[1:]
        is_number = destination.startswith("+") and digits.isdigit() and 8 <= len(digits) <= 15
        if not (is_number or destination.startswith("sip:")):
            raise ValueError(f"transfer target {name!r}: {destination!r} is not +E.164 or sip:")
        targets[name] = destination
    return targets


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings` from the environment, ``.env`` and keyword overrides.

    Raises:
        ConfigError: one line per bad variable, e.g. ``PORT: Input should be a valid integer``.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting (not one of the variables in the README)"
            lines.append(f"{name}: {message}" if name else message)  # a rule across variables
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
