"""Admission: which calls we take and for how long we hold their slots.

Capacity (``MAX_CONCURRENT_CALLS``, shared by both call paths), per-call stream tokens, answered
calls not yet streaming, and draining at shutdown. Knows nothing of the bridge or of OpenAI.
"""

from .rate import RateLimit
from .registry import (
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Admission,
    CallRegistry,
    Controllable,
    Refused,
)
from .tokens import StreamTokens, TokenError

__all__ = [
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "Admission",
    "CallRegistry",
    "Controllable",
    "RateLimit",
    "Refused",
    "StreamTokens",
    "TokenError",
]
