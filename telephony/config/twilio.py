"""Twilio: the public URL it reaches, the credentials its requests are checked with, and the
REST API."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from .checks import MIN_SECRET_CHARS, empty_is_unset, long_enough

__all__ = ["TwilioSettings"]


class TwilioSettings(BaseModel):
    """Twilio: public URL, signatures, account, REST, stream tokens, development mode."""

    public_url: str | None = Field(
        default=None,
        description="public `https://` base URL Twilio reaches (e.g. the ngrok URL); no query "
        "string; required with `TWILIO_AUTH_TOKEN`",
    )
    instance_public_url: str | None = Field(
        default=None,
        description="this instance's own public base URL, reached without the balancer: the "
        "webhook points the Media Stream here, so the stream lands where its pre-warmed model "
        "session waits (fleet mode; see docs/fleet.md)",
    )
    twilio_account_sid: str | None = Field(
        default=None, description="`AC…` account SID (for REST calls)"
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio auth token (never logged); needs `PUBLIC_URL`"
    )
    twilio_webhook_shared_key: SecretStr | None = Field(
        default=None,
        description="secret of a Twilio webhook SharedKey (HMAC-SHA256 signatures named by "
        "`X-Twilio-Webhooks-Signature-Settings`); at least 32 characters",
    )
    twilio_webhook_shared_key_id: str | None = Field(
        default=None,
        max_length=100,
        description="that SharedKey's id; a signature naming another key is refused",
    )
    twilio_api_base_url: str | None = Field(
        default=None,
        description="where the REST calls go (a local stand-in in tests)",
        json_schema_extra={"shown_default": "`https://api.twilio.com`"},
    )
    allow_unsigned: bool = Field(
        default=False,
        description="development mode: accept unsigned Twilio requests; needs a loopback "
        "`HOST` and no `PUBLIC_URL`, refuses proxied requests, and says so loudly at start-up",
    )
    stream_token_secret: SecretStr | None = Field(
        default=None,
        description="secret for the per-call stream tokens, at least 32 characters; required "
        "with `REDIS_URL` (every instance verifies the others' tokens)",
        json_schema_extra={"shown_default": "random per process"},
    )

    _twilio_secrets_unset = field_validator(
        "twilio_auth_token", "twilio_webhook_shared_key", "stream_token_secret", mode="before"
    )(empty_is_unset)

    @field_validator("stream_token_secret", "twilio_webhook_shared_key")
    @classmethod
    def _long_enough_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return long_enough(value, MIN_SECRET_CHARS)

    @field_validator("public_url", "instance_public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s):// base URL such as https://abc.ngrok.app")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        if parts.path.strip("/"):
            base = f"{parts.scheme}://{parts.netloc}"
            raise ValueError(
                f"must be the base URL without a path: {base}, not {value} (the routes, such "
                "as /incoming-call, are added to it)"
            )
        return value.rstrip("/")

    @field_validator("twilio_account_sid")
    @classmethod
    def _check_account_sid(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", value, re.ASCII):
            raise ValueError("must look like AC followed by 32 hex digits")
        return value

    @model_validator(mode="after")
    def _signed_unless_developing(self) -> TwilioSettings:
        if self.allow_unsigned and (self.public_url or self.instance_public_url):
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
