"""What a call costs: the price table (:class:`Prices`) and its setting, ``PRICES``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import BaseModel, Field, field_validator

__all__ = ["PRICES_SOURCE", "TOKEN_KINDS", "CostSettings", "Prices"]

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
