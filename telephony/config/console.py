"""The operator console, call recordings and how long call logs are kept."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from .checks import MIN_TOKEN_CHARS, empty_is_unset, long_enough

__all__ = ["ConsoleSettings"]


class ConsoleSettings(BaseModel):
    """Console, recordings and retention (see "Operator console" and "Recordings")."""

    console_token: SecretStr | None = Field(
        default=None,
        description="turns the operator console (`/console`) on; at least 24 characters; "
        "unset: 404",
    )
    console_show_numbers: bool = Field(
        default=False,
        description="the console shows whole phone numbers (else only the last 4 digits)",
    )
    record_calls: bool = Field(
        default=False,
        description="write a stereo recording `<CallSid>.wav` next to each call's log (left "
        'the caller, right the agent as heard); see "Recordings"',
    )
    recording_disclosure: str = Field(
        default="This call may be recorded.",
        max_length=300,
        description="with `RECORD_CALLS`, said by the agent before `GREETING`; empty: nothing "
        "is said",
    )
    retention_days: float = Field(
        default=0,
        ge=0,
        description="delete call logs and recordings older than this many days (checked at "
        "start and hourly); `0`: keep everything",
    )

    _console_secrets_unset = field_validator("console_token", mode="before")(empty_is_unset)

    @field_validator("console_token")
    @classmethod
    def _console_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return long_enough(value, MIN_TOKEN_CHARS)
