"""Service configuration: one :class:`Settings` object, read once at start-up from the
environment and an optional ``.env`` file (pydantic-settings), composed of one small model per
concern (:data:`GROUPS`: the server, Twilio, the model, SIP, the call, turn-taking, the offline
model, outbound calls, console and recordings, cost, the fleet), and the per-call slices of it
that the call paths take (:class:`CallLimits`, :class:`CallFeatures`).

Variable names are the field names upper-cased, whatever group a field is in. Malformed
values, unknown keys in ``.env`` and rules across variables fail at start-up with
:class:`ConfigError`, whose message names the variable. The settings tables of
docs/configuration.md are :func:`~.table.settings_markdown` (``python -m telephony.config``),
checked by a test.
Imports nothing of the package.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .calls import BargeInRules, CallFeatures, CallLimits, CallSettings, parse_transfer_targets
from .checks import MIN_SECRET_CHARS, MIN_TOKEN_CHARS, is_loopback
from .console import ConsoleSettings
from .fleet import FleetSettings
from .model import ModelSettings, SipSettings
from .outbound import OutboundSettings
from .prices import PRICES_SOURCE, TOKEN_KINDS, CostSettings, Prices
from .server import ServerSettings
from .turns import LocalModelSettings, TurnSettings
from .twilio import TwilioSettings

__all__ = [
    "GROUPS",
    "MIN_SECRET_CHARS",
    "MIN_TOKEN_CHARS",
    "PRICES_SOURCE",
    "TOKEN_KINDS",
    "BargeInRules",
    "CallFeatures",
    "CallLimits",
    "ConfigError",
    "Prices",
    "Settings",
    "load_settings",
    "misspelled_variables",
    "parse_transfer_targets",
]

# one model per concern, in the order docs/configuration.md lists them
GROUPS: tuple[type[BaseModel], ...] = (
    ServerSettings,
    TwilioSettings,
    ModelSettings,
    SipSettings,
    CallSettings,
    TurnSettings,
    LocalModelSettings,
    OutboundSettings,
    ConsoleSettings,
    CostSettings,
    FleetSettings,
)

Group = TypeVar("Group", bound=BaseModel)


class ConfigError(ValueError):
    """Raised when the configuration cannot be loaded; the message names each bad variable."""


class Settings(
    BaseSettings,
    FleetSettings,
    CostSettings,
    ConsoleSettings,
    OutboundSettings,
    LocalModelSettings,
    TurnSettings,
    CallSettings,
    SipSettings,
    ModelSettings,
    TwilioSettings,
    ServerSettings,
):
    """All settings of the service: every group of :data:`GROUPS` (their fields and checks),
    and the rules across groups. Field names are the environment variable names, lower-cased.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        case_sensitive=False,
    )

    @model_validator(mode="after")
    def _unsigned_only_on_loopback(self) -> Settings:
        if self.allow_unsigned and not is_loopback(self.host):
            raise ValueError(
                "ALLOW_UNSIGNED=true is a development mode and needs a loopback HOST "
                f"(127.0.0.1, ::1 or localhost), not {self.host!r}"
            )
        return self

    @model_validator(mode="after")
    def _fleet_needs_a_shared_secret(self) -> Settings:
        if self.redis_url is not None and self.stream_token_secret is None:
            raise ValueError(
                "STREAM_TOKEN_SECRET is required with REDIS_URL: every instance must verify the "
                "stream tokens the others issue"
            )
        return self

    def part(self, group: type[Group]) -> Group:
        """This configuration's values of one group (a model of :data:`GROUPS`)."""
        return group.model_construct(**{name: getattr(self, name) for name in group.model_fields})

    def secret_values(self) -> list[str]:
        """Every configured secret's value (for the log's redaction; never log them)."""
        values = [getattr(self, name) for name in type(self).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]

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
            prices=Prices.with_overrides(self.prices, self.openai_realtime_model),
            hold_delay=self.filler_delay or None,
            record=self.record_calls,
            warm_targets=self.warm_destinations,
            ring_timeout=self.transfer_ring_timeout,
            decide_timeout=self.transfer_decide_timeout,
            transfer_offer=self.transfer_offer,
        )


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
                message = "unknown setting (not one of docs/configuration.md's variables)"
                close = difflib.get_close_matches(name, _variables(), n=1, cutoff=0.75)
                if close:
                    message += f"; did you mean {close[0]}?"
            lines.append(f"{name}: {message}" if name else message)  # a rule across variables
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _variables() -> list[str]:
    return [name.upper() for name in Settings.model_fields]


def misspelled_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Environment variables that look like one of ours but are not (``TWILLIO_AUTH_TOKEN``):
    the environment also holds other programs' variables, so these are warnings, one line
    each with the name meant; ``.env`` typos are errors instead (:func:`load_settings`)."""
    ours = _variables()
    environ = os.environ if environ is None else environ
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in ours or not upper.replace("_", "").isalnum():
            continue
        close = difflib.get_close_matches(upper, ours, n=1, cutoff=0.8)
        if close:
            lines.append(f"{name} is not a setting of this server: did you mean {close[0]}?")
    return lines
