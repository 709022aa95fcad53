"""What a call cost: model tokens by kind, priced per million, plus carrier minutes.

The model reports usage per response (OpenAI's ``response.done`` → ``response.usage``):
``input_token_details`` splits input into ``text_tokens`` and ``audio_tokens`` (cached ones
included) with ``cached_tokens_details`` saying how many of each were cached;
``output_token_details`` splits output likewise. :func:`tokens_of` turns that into the six kinds
priced separately; :class:`~telephony.config.Prices` prices them and the carrier minutes.

Default prices: OpenAI's model page for ``gpt-realtime-1.5`` (the same as ``gpt-realtime``),
read 2026-11-29; Twilio's US list prices for a local number's inbound minute and an outbound
minute (Twilio support, "How Volume Pricing works at Twilio"), read 2026-11-29. Override any
of them with ``PRICES`` (JSON, e.g. ``{"audio_output": 20, "carrier_outbound_per_minute":
0.01}``): prices change, and yours may be negotiated.
"""

from __future__ import annotations

from typing import Any

from ..config import PRICES_SOURCE, TOKEN_KINDS, Prices

__all__ = ["PRICES_SOURCE", "TOKEN_KINDS", "Prices", "add_tokens", "tokens_of"]


def tokens_of(usage: dict[str, Any]) -> dict[str, int]:
    """OpenAI's ``response.usage`` as the six priced kinds (absent details count as 0)."""

    def count(source: dict[str, Any] | None, key: str) -> int:
        value = (source or {}).get(key)
        return int(value) if isinstance(value, int | float) else 0

    given = usage.get("input_token_details") or {}
    cached = given.get("cached_tokens_details") or {}
    out = usage.get("output_token_details") or {}
    cached_text, cached_audio = count(cached, "text_tokens"), count(cached, "audio_tokens")
    return {
        "text_input": max(0, count(given, "text_tokens") - cached_text),
        "text_cached_input": cached_text,
        "audio_input": max(0, count(given, "audio_tokens") - cached_audio),
        "audio_cached_input": cached_audio,
        "text_output": count(out, "text_tokens"),
        "audio_output": count(out, "audio_tokens"),
    }


def add_tokens(total: dict[str, int], more: dict[str, int]) -> None:
    """Add ``more`` into ``total``, kind by kind."""
    for kind, value in more.items():
        total[kind] = total.get(kind, 0) + value
