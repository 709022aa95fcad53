"""Many instances: worker processes and the fleet's shared state on Redis."""

from __future__ import annotations

import os
import secrets
import socket

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from .checks import empty_is_unset

__all__ = ["FleetSettings"]


class FleetSettings(BaseModel):
    """Workers and the fleet (see "Running many instances")."""

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="worker processes of `server.py` on one port; more than 1 needs `REDIS_URL`",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="`redis://…` of the fleet's shared state (Redis OSS 7.0+ or Valkey 7.2+); "
        "unset: one instance, all state in process (never logged)",
    )
    instance_id: str = Field(
        # the random part: two containers on one host network share the host name and are
        # both pid 1, and would be one member of the fleet
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="this instance's name in the fleet and in every call-log record (workers "
        "append their pid)",
        json_schema_extra={"shown_default": "hostname-pid-random"},
    )
    fleet_max_calls: int | None = Field(
        default=None,
        ge=1,
        description="calls in progress across the fleet (beside each instance's "
        "`MAX_CONCURRENT_CALLS`); unset: no fleet limit",
    )
    fleet_lease: float = Field(
        default=30.0, gt=0, description="seconds a crashed instance's calls keep their fleet slots"
    )
    fleet_heartbeat: float = Field(
        default=5.0,
        gt=0,
        description="seconds between an instance's re-assertions of its fleet state "
        "(membership, leases, owners)",
    )
    drain_lb_grace: float = Field(
        default=10.0,
        ge=0,
        description="in a fleet, while draining, streams the balancer still routes here are "
        "taken this long",
    )
    control_timeout: float = Field(
        default=2.0,
        gt=0,
        description="seconds `POST /calls/{sid}/hangup\\|transfer` waits for the call's owner "
        "before using the carrier API",
    )

    _fleet_secrets_unset = field_validator("redis_url", mode="before")(empty_is_unset)

    @model_validator(mode="after")
    def _workers_share_redis(self) -> FleetSettings:
        if self.workers > 1 and self.redis_url is None:
            raise ValueError(
                "WORKERS > 1 needs REDIS_URL: each worker is a separate process, and without "
                "shared state a stream that reaches another worker than its webhook is refused"
            )
        if self.fleet_lease <= 2 * self.fleet_heartbeat:
            raise ValueError("FLEET_LEASE must be more than twice FLEET_HEARTBEAT")
        return self
