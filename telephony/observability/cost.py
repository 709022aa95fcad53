"""What a call cost: model tokens by kind, priced per million, plus carrier minutes.

The model reports usage per response (OpenAI's ``response.done`` → ``response.usage``):
``input_token_details`` splits input into ``text_tokens`` and ``audio_tokens`` (cached ones
included) with ``cached_tokens_details`` saying how many of each were cached;
``output_token_details`` splits output likewise. :func:`tokens_of` turns that into the six kinds
priced separately; :class:`~telephony.config.Prices` prices them and the carrier minutes.

Caller transcripts are billed apart: ``conversation.item.input_audio_transcription.completed``
carries its own ``usage`` (tokens, or seconds for a model billed by duration), priced as
``transcription_input``/``transcription_output`` (:func:`transcription_tokens_of`).

Default prices: :data:`~telephony.config.prices.PRICES_SOURCE` (OpenAI's model pages, the row
of the configured ``OPENAI_REALTIME_MODEL``; Twilio's US list prices for a local number's
inbound minute and an outbound minute). Override any of them with ``PRICES`` (JSON, e.g.
``{"audio_output": 20, "carrier_outbound_per_minute": 0.01}``): prices change, and yours may
be negotiated.
"""

from __future__ import annotations

from typing import Any

from ..config import PRICES_SOURCE, TOKEN_KINDS, Prices

__all__ = [
    "PRICES_SOURCE",
    "TOKEN_KINDS",
    "Prices",
    "add_tokens",
    "tokens_of",
    "transcription_tokens_of",
]


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


def transcription_tokens_of(usage: Any) -> dict[str, int]:
    """The ``usage`` of OpenAI's ``conversation.item.input_audio_transcription.completed``
    (the caller's transcript) as priced kinds: ``{"type": "tokens", "input_tokens",
    "output_tokens"}`` or ``{"type": "duration", "seconds"}``; {} for anything else."""
    if not isinstance(usage, dict):
        return {}

    def count(key: str) -> int:
        value = usage.get(key)
        return max(0, int(value)) if isinstance(value, int | float) else 0

    if usage.get("type") == "duration":
        return {"transcription_seconds": count("seconds")}
    if usage.get("type") == "tokens":
        return {
            "transcription_input": count("input_tokens"),
            "transcription_output": count("output_tokens"),
        }
    return {}


def add_tokens(total: dict[str, int], more: dict[str, int]) -> None:
    """Add ``more`` into ``total``, kind by kind."""
    for kind, value in more.items():
        total[kind] = total.get(kind, 0) + value
