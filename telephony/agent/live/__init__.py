"""The GPT-Live backend's model side (``REALTIME_BACKEND=live``): the session config derived
from the call's agent (:mod:`.config`), the session over the official ``openai`` client
(:mod:`.session`) and the delegate's tool loop (:mod:`.delegation`). The Media Streams bridge
that joins it to Twilio is :mod:`telephony.bridge.live_call`."""

from .backend import LiveBackend
from .config import LiveOptions, LivePlan, frontend_prompt, plan_session
from .delegation import Delegations, FunctionCall
from .session import APPEND, AudioDelta, LiveSession, LiveSessionError

__all__ = [
    "APPEND",
    "AudioDelta",
    "Delegations",
    "FunctionCall",
    "LiveBackend",
    "LiveOptions",
    "LivePlan",
    "LiveSession",
    "LiveSessionError",
    "frontend_prompt",
    "plan_session",
]
