"""Test helpers shipped with the package: loopback stand-ins for OpenAI Realtime and Twilio REST."""

from .openai_api import OpenAIApiStandIn, signed_webhook
from .realtime_server import LoopbackRealtimeServer, RealtimeConnection, tone
from .twilio_api import ApiRequest, TwilioApiStandIn

__all__ = [
    "ApiRequest",
    "LoopbackRealtimeServer",
    "OpenAIApiStandIn",
    "RealtimeConnection",
    "TwilioApiStandIn",
    "signed_webhook",
    "tone",
]
