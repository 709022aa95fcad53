"""Outbound calls: ``POST /calls``, who may be dialled, and what an answering machine hears."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator

from .checks import MIN_TOKEN_CHARS, empty_is_unset, long_enough

__all__ = ["OutboundSettings"]


class OutboundSettings(BaseModel):
    """Outbound calls and call control over HTTP."""

    twilio_from_number: str | None = Field(
        default=None,
        description="caller ID (+E.164, one of your Twilio numbers) for outbound calls",
    )
    dial_api_token: SecretStr | None = Field(
        default=None,
        description="bearer token for `POST /calls` (and call control); at least 24 "
        "characters; unset: the endpoints answer 404",
    )
    dial_allowed_prefixes: str = Field(
        default="",
        description="outbound calls only to numbers starting with one of these (`+1,+44`); "
        "empty: any",
    )
    dial_rate_limit: int = Field(
        default=30,
        ge=1,
        description="outbound calls `POST /calls` may place per minute, per instance",
    )
    outbound_amd: bool = Field(
        default=True,
        description="outbound calls detect who answered (Twilio's asynchronous AMD): a machine "
        "gets the voicemail, a fax is hung up",
    )
    voicemail_message: str = Field(
        default=(
            "Hello, this is the automated assistant returning your call. Sorry we missed you. "
            "Please call us back when it suits you. Goodbye."
        ),
        min_length=1,
        max_length=500,
        description="what the agent says to an answering machine when `POST /calls` gives no "
        "`voicemail_message` (500 characters at most)",
    )

    _outbound_secrets_unset = field_validator("dial_api_token", mode="before")(empty_is_unset)

    @field_validator("dial_api_token")
    @classmethod
    def _dial_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return long_enough(value, MIN_TOKEN_CHARS)

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
