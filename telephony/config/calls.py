"""What one call is allowed and does, as the call paths take it: :class:`CallLimits`,
:class:`CallFeatures`, :class:`BargeInRules` (plain dataclasses, built from the settings at
start-up), and the settings of a call's behaviour (:class:`CallSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

from .prices import Prices

__all__ = [
    "BargeInRules",
    "CallFeatures",
    "CallLimits",
    "CallSettings",
    "parse_transfer_targets",
]


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

    start_timeout: float = 2.0
    connect_timeout: float = 15.0
    close_timeout: float = 5.0
    idle_timeout: float = 30.0
    max_duration: float = 3600.0
    audio_ahead: float = 1.0
    session_max: float = 3600.0
    renewal_margin: float = 120.0
    history_tokens: int = 16_000


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
        warm_targets: destination names transferred warm (the agent briefs a person first).
        ring_timeout: seconds a warm transfer's person is rung before it counts as no answer.
        decide_timeout: seconds from dialling the person to their decision, at most.
        transfer_offer: what the agent offers the caller when the person declines.
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
    warm_targets: frozenset[str] = frozenset()
    ring_timeout: int = 25
    decide_timeout: float = 60.0
    transfer_offer: str = ""


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


class CallSettings(BaseModel):
    """The call: greeting, keypad, time limits, hang-up, transfer, tools' hold sound."""

    greeting: str = Field(
        default="Hello! Thanks for calling. How can I help you today?",
        description="what the agent says as soon as the stream starts; empty: the agent waits "
        "for the caller",
    )
    idle_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds without caller audio before the call is ended (`idle_timeout`)",
    )
    max_call_duration: float = Field(
        default=3600.0,
        gt=0,
        description="seconds after `start` before the call is ended (`max_duration`)",
    )
    audio_ahead_limit: float = Field(
        default=1.0,
        ge=0,
        description="seconds caller audio may run ahead of real time (more is dropped); 0: no "
        "limit, for replays faster than real time",
    )
    dtmf_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds after the last key before the digits go to the agent (`#` sends "
        "at once)",
    )
    hangup_grace: float = Field(
        default=10.0,
        gt=0,
        description="longest wait for the goodbye to play before `end_call` hangs up",
    )
    transfer_targets: str = Field(
        default="",
        description="allowed `transfer_call` destinations: "
        "`sales=+15551230000,support=sip:help@example.com`",
    )
    transfer_warm: str = Field(
        default="",
        description="destination names of `TRANSFER_TARGETS` transferred warm (the caller "
        "holds while the agent briefs the person, who accepts or declines); `*`: all",
    )
    transfer_ring_timeout: int = Field(
        default=25,
        ge=5,
        le=600,
        description="seconds a warm transfer rings the person before it counts as no answer",
    )
    transfer_decide_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds from dialling the person to their decision, at most "
        "(`transfer.timeout`)",
    )
    transfer_offer: str = Field(
        default="to take a message, or to have someone call them back",
        description="what the agent offers the caller when a warm transfer is declined",
    )
    apology_message: str = Field(
        default="Sorry, we are having technical difficulties. Please call again later. Goodbye.",
        description="said through the REST API when the model fails for good",
    )
    goodbye_message: str = Field(
        default="Sorry, this call has to end now. Please call again later. Goodbye.",
        description="said through the REST API when we end a call for shutdown or "
        "`MAX_CALL_DURATION`",
    )
    filler_delay: float = Field(
        default=1.0,
        ge=0,
        description="seconds a tool may run before the caller hears the hold sound (stopped "
        "the moment the reply starts); `0`: never",
    )
    hold_sound: Path | None = Field(
        default=None,
        description="the hold loop: a headerless μ-law 8 kHz file; unset: two soft tones "
        "every 1.2 s",
    )

    @field_validator("transfer_targets")
    @classmethod
    def _check_transfer_targets(cls, value: str) -> str:
        parse_transfer_targets(value)
        return value

    @model_validator(mode="after")
    def _check_transfer_warm(self) -> CallSettings:
        names = {n.strip() for n in self.transfer_warm.split(",") if n.strip()} - {"*"}
        unknown = sorted(names - set(self.transfer_destinations))
        if unknown:
            raise ValueError(f"TRANSFER_WARM names {unknown} that TRANSFER_TARGETS does not")
        sip = sorted(n for n in names if self.transfer_destinations[n].startswith("sip:"))
        if sip:
            raise ValueError(f"TRANSFER_WARM: {sip} are sip: URIs; a warm transfer dials a number")
        return self

    @property
    def warm_destinations(self) -> frozenset[str]:
        """``TRANSFER_WARM`` as destination names (``*``: every target that is a number)."""
        names = {n.strip() for n in self.transfer_warm.split(",") if n.strip()}
        targets = self.transfer_destinations
        if "*" in names:
            return frozenset(n for n, to in targets.items() if to.startswith("+"))
        return frozenset(names)

    @property
    def transfer_destinations(self) -> dict[str, str]:
        """``TRANSFER_TARGETS`` parsed: ``{name: +E.164 or sip: URI}``."""
        return parse_transfer_targets(self.transfer_targets)
