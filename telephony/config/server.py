"""The server process: where it listens, its logs, and how much it takes on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from .checks import MIN_TOKEN_CHARS, empty_is_unset, long_enough

__all__ = ["ServerSettings"]


class ServerSettings(BaseModel):
    """The server: address, logs, capacity, slow clients, draining, metrics."""

    host: str = Field(default="127.0.0.1", min_length=1, description="bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="bind port")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="`debug`, `info`, `warning` or `error`"
    )
    call_log_dir: Path = Field(
        default=Path("./calls"), description="where per-call logs `<CallSid>.jsonl` go"
    )
    max_concurrent_calls: int = Field(
        default=20,
        ge=1,
        description='calls beyond it get TwiML `<Reject reason="busy"/>` before any model session',
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a client may take to send a request's headers"
    )
    body_timeout: float = Field(
        default=10.0, gt=0, description="seconds a client may take to send a request's body"
    )
    max_connections: int | None = Field(
        default=None,
        ge=8,
        description="open connections at most; the oldest incomplete request is evicted beyond",
        json_schema_extra={"shown_default": "4 × `MAX_CONCURRENT_CALLS` + 64"},
    )
    drain_timeout: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, seconds calls in progress may run before they are ended",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="bearer token for `GET /metrics`; at least 24 characters; unset: open",
    )

    _server_secrets_unset = field_validator("metrics_token", mode="before")(empty_is_unset)

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        return long_enough(value, MIN_TOKEN_CHARS)

    @property
    def connection_limit(self) -> int:
        """``MAX_CONNECTIONS``, or 4 per call allowed plus 64 for webhooks and health checks."""
        return self.max_connections or 4 * self.max_concurrent_calls + 64
