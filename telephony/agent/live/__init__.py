"""The GPT-Live backend's model side (``REALTIME_BACKEND=live``): the session config derived
from the call's agent (:mod:`.config`), the session over the official ``openai`` client
(:mod:`.session`), the delegate's tool loop (:mod:`.delegation`) and the server events as a
call logs them (:mod:`.events`). The Media Streams bridge that joins it to Twilio is
:mod:`telephony.bridge.live_call`; the SIP path's, :mod:`telephony.sip.live`."""

from .backend import LiveBackend
from .config import LiveOptions, LivePlan, delegation_update, frontend_prompt, plan_session
from .delegation import Delegations, FunctionCall
from .events import LiveEvents, Transcript
from .session import APPEND, AudioDelta, LiveSession, LiveSessionError
from .speech import AgentSpeech, speech_frames

__all__ = [
    "APPEND",
    "AgentSpeech",
    "AudioDelta",
    "Delegations",
    "FunctionCall",
    "LiveBackend",
    "LiveEvents",
    "LiveOptions",
    "LivePlan",
    "LiveSession",
    "LiveSessionError",
    "Transcript",
    "delegation_update",
    "frontend_prompt",
    "plan_session",
    "speech_frames",
]
