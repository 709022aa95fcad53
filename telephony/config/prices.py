"""What a call costs: the price table (:class:`Prices`) and its setting, ``PRICES``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import BaseModel, Field, field_validator

__all__ = ["MODEL_PRICES", "PRICES_SOURCE", "TOKEN_KINDS", "CostSettings", "Prices"]

PRICES_SOURCE = (
    "OpenAI's model pages (gpt-realtime-2.1, -2, -1.5, gpt-realtime, -2.1-mini, -mini, "
    "gpt-4o-mini-transcribe) and Twilio's US voice list prices, read 2026-12-04; gpt-live-1.1 "
    "(per active minute) from its model page, and gpt-5.4-mini (GPT-Live's default delegate) "
    "as OpenAI's pricing page listed it in 2026-04, read 2026-12-06"
)
TOKEN_KINDS = (
    "text_input",
    "text_cached_input",
    "audio_input",
    "audio_cached_input",
    "text_output",
    "audio_output",
    "transcription_input",
    "transcription_output",
)
DELEGATE_KINDS = ("delegate_input", "delegate_cached_input", "delegate_output")
_FLAGSHIP = (4.00, 0.40, 32.00, 0.40, 24.00, 64.00)  # text in, cached, audio in, cached, out...
_FIRST = (4.00, 0.40, 32.00, 0.40, 16.00, 64.00)
_MINI = (0.60, 0.06, 10.00, 0.30, 2.40, 20.00)
MODEL_PRICES: dict[str, tuple[float, ...]] = {
    "gpt-realtime-2.1": _FLAGSHIP,
    "gpt-realtime-2": _FLAGSHIP,
    "gpt-realtime-1.5": _FIRST,
    "gpt-realtime": _FIRST,
    "gpt-realtime-2.1-mini": _MINI,
    "gpt-realtime-mini": _MINI,
}
"""USD per million tokens by model, in :data:`TOKEN_KINDS`' first six kinds' order (text
input, cached text input, audio input, cached audio input, text output, audio output)."""


@dataclass(frozen=True)
class Prices:
    """USD per million tokens of each kind, and per carrier minute (billed in whole minutes,
    as Twilio bills). The defaults are ``gpt-realtime-2.1``'s and ``gpt-4o-mini-transcribe``'s
    (caller transcripts), per :data:`PRICES_SOURCE`; :meth:`with_overrides` picks the model's
    row of :data:`MODEL_PRICES`, and ``PRICES`` overrides any."""

    text_input: float = 4.00
    text_cached_input: float = 0.40
    audio_input: float = 32.00
    audio_cached_input: float = 0.40
    text_output: float = 24.00
    audio_output: float = 64.00
    transcription_input: float = 1.25
    transcription_output: float = 5.00
    transcription_per_minute: float = 0.006  # a transcription billed by duration (whisper-1)
    live_per_minute: float = 0.05  # GPT-Live, per active minute (billed per second)
    delegate_input: float = 0.75  # GPT-Live's delegate (Responses) model, per million tokens
    delegate_cached_input: float = 0.075
    delegate_output: float = 4.50
    carrier_inbound_per_minute: float = 0.0085
    carrier_outbound_per_minute: float = 0.0130

    @classmethod
    def with_overrides(cls, overrides: dict[str, float], model: str | None = None) -> Prices:
        """The prices of ``model`` (its row of :data:`MODEL_PRICES`; the defaults for a model
        not in it) with ``overrides`` replacing some. Raises ValueError on an unknown name or
        a negative price."""
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown prices {sorted(unknown)}; known: {sorted(names)}")
        if any(value < 0 for value in overrides.values()):
            raise ValueError("prices cannot be negative")
        base = cls()
        if model in MODEL_PRICES:
            base = replace(base, **dict(zip(TOKEN_KINDS[:6], MODEL_PRICES[model], strict=True)))
        return replace(base, **{k: float(v) for k, v in overrides.items()})

    def model_usd(self, tokens: dict[str, int]) -> float:
        """The model's share for ``tokens`` (kinds of :data:`TOKEN_KINDS`,
        ``transcription_seconds`` for a transcription billed by duration; on GPT-Live,
        ``live_seconds`` of active session time and the delegate's ``delegate_input``,
        ``delegate_cached_input`` and ``delegate_output`` tokens)."""
        table = asdict(self)
        kinds = (*TOKEN_KINDS, *DELEGATE_KINDS)
        per_token = sum(tokens.get(kind, 0) * table[kind] for kind in kinds) / 1_000_000
        minutes = tokens.get("transcription_seconds", 0) / 60
        live_minutes = tokens.get("live_seconds", 0) / 60
        return (
            per_token
            + minutes * self.transcription_per_minute
            + live_minutes * self.live_per_minute
        )

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


class CostSettings(BaseModel):
    """Cost: the price table each call's cost is reckoned with (docs/cost.md)."""

    prices: dict[str, float] = Field(
        default_factory=dict,
        description="JSON: prices that differ from the defaults, USD per million tokens by "
        'kind or per carrier minute (see "What each call cost")',
    )

    @field_validator("prices")
    @classmethod
    def _known_prices(cls, value: dict[str, float]) -> dict[str, float]:
        Prices.with_overrides(value)  # raises ValueError naming what is wrong
        return value
