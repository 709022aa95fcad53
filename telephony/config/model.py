"""The model: which one answers, how we reach it, which agent and voice, and how its sessions
are kept alive and renewed."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from .checks import empty_is_unset

__all__ = ["ModelSettings", "SipSettings"]


class ModelSettings(BaseModel):
    """The model: backend, OpenAI access, agent, voice, session life and liveness."""

    openai_api_key: SecretStr | None = Field(
        default=None, description="OpenAI API key for Realtime sessions (never logged)"
    )
    realtime_backend: Literal["auto", "openai", "local", "live"] = Field(
        default="auto",
        description="`openai` (Realtime), `live` (GPT-Live, Media Streams calls; see "
        "docs/gpt-live.md), `local` (the embedded offline model), or `auto`: OpenAI Realtime "
        "when `OPENAI_API_KEY` is set, else local",
    )
    openai_live_model: str = Field(
        default="gpt-live-1.1", min_length=1, description="GPT-Live model (`REALTIME_BACKEND=live`)"
    )
    openai_live_delegate_model: str = Field(
        default="gpt-5.4-mini",
        min_length=1,
        description="the Responses model GPT-Live delegates tool work to; it gets the agent's "
        "instructions and tools",
    )
    openai_live_url: str | None = Field(
        default=None,
        description="`ws(s)://` base of GPT-Live's sockets (`…/live/sessions` is added); unset: "
        "`OPENAI_BASE_URL`'s host (tests, proxies)",
    )
    live_echo_gate: bool = Field(
        default=True,
        description="on GPT-Live, caller audio that is only the agent's own echo reaches the "
        "model as silence (the echo judge of the barge-in guard)",
    )
    live_numbers: str = Field(
        default="",
        description="calls to these numbers (comma-separated +E.164; dialled calls: from them) "
        "run on GPT-Live, the others on `REALTIME_BACKEND`; needs `OPENAI_API_KEY`; Media "
        "Streams calls only (SIP follows `REALTIME_BACKEND`)",
    )
    live_instructions: str | None = Field(
        default=None,
        description="GPT-Live's short frontend prompt (persona, backchannel, interruption and "
        "delegation policies); unset: derived from the agent",
    )
    openai_realtime_model: str = Field(
        default="gpt-realtime-2.1", min_length=1, description="Realtime model name"
    )
    openai_realtime_url: str | None = Field(
        default=None,
        description='`ws(s)://` URL passed verbatim as the SDK\'s `model_config["url"]` '
        "(Azure, proxies, tests)",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="OpenAI REST base URL for the SIP path's Calls API and GPT-Live's socket "
        "(`ws(s)://` of the same host; a stand-in in tests)",
        json_schema_extra={"shown_default": "`https://api.openai.com/v1`"},
    )
    agent: str | None = Field(
        default=None, description="your own agent as `module:attribute` (see below)"
    )
    voice: str = Field(default="marin", min_length=1, description="Realtime voice")
    model_session_max: float = Field(
        default=3600.0,
        gt=0,
        description="seconds a model session lasts when `session.created` has no `expires_at` "
        "(OpenAI 3600; set 1800 for Azure)",
    )
    model_renewal_margin: float = Field(
        default=120.0,
        gt=0,
        description="a model session is replaced, at the first quiet moment, this many seconds "
        "before it expires",
    )
    model_history_tokens: int = Field(
        default=16_000,
        ge=500,
        description="conversation replayed into a new session, at most (about 4 characters a "
        "token; older turns are left out)",
    )
    model_silence_timeout: float = Field(
        default=0.5,
        gt=0,
        description="seconds with nothing received from the model before its socket is pinged",
    )
    model_ping_timeout: float = Field(
        default=1.0,
        gt=0,
        description="seconds without a pong before the model socket is dropped (and the call "
        "reconnects)",
    )
    model_prewarm: bool = Field(
        default=True,
        description="open the call's model session and ask for its greeting when the webhook "
        "answers (or a call is dialled), so the greeting is ready when the stream starts",
    )
    model_prewarm_timeout: float = Field(
        default=15.0,
        gt=0,
        description="seconds a pre-warmed session waits for its stream before it is closed "
        "(a dialled call: plus the 60 s ring timeout)",
    )
    model_close_timeout: float = Field(
        default=1.0,
        gt=0,
        description="seconds the model socket's close handshake may take (a close frame with "
        "TCP left open)",
    )

    _model_secrets_unset = field_validator("openai_api_key", "live_instructions", mode="before")(
        empty_is_unset
    )

    @field_validator("live_numbers")
    @classmethod
    def _check_live_numbers(cls, value: str) -> str:
        for number in filter(None, (part.strip() for part in value.split(","))):
            digits = number[1:]
            if not (number.startswith("+") and digits.isdigit() and 8 <= len(digits) <= 15):
                raise ValueError(f"{number!r} is not a +E.164 number")
        return value

    @property
    def live_number_set(self) -> frozenset[str]:
        """``LIVE_NUMBERS`` parsed: the numbers whose calls run on GPT-Live."""
        return frozenset(filter(None, (part.strip() for part in self.live_numbers.split(","))))

    @field_validator("openai_realtime_url", "openai_live_url")
    @classmethod
    def _check_realtime_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("ws", "wss"):
            raise ValueError("must be a ws:// or wss:// URL")
        return value


class SipSettings(BaseModel):
    """The SIP path (Twilio Elastic SIP trunk → OpenAI SIP)."""

    openai_webhook_secret: SecretStr | None = Field(
        default=None,
        description="signing secret of your OpenAI project's webhook; enables the SIP path "
        "(`/openai/webhook`)",
    )

    sip_transfer_domain: str | None = Field(
        default=None,
        description="a Twilio SIP Domain (`example.sip.twilio.com`) whose Voice URL is this "
        "service's `/incoming-call`: a warm transfer on the SIP path refers the caller there and "
        "goes on as a Media Streams call; unset: warm names are transferred cold on SIP",
    )

    _sip_secrets_unset = field_validator("openai_webhook_secret", mode="before")(empty_is_unset)
    _sip_domain_unset = field_validator("sip_transfer_domain", mode="before")(empty_is_unset)

    @field_validator("sip_transfer_domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        value = value.strip().lower() if value is not None else None
        if value is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", value):
            raise ValueError("must be a host name such as example.sip.twilio.com")
        return value
