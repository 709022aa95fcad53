"""The SIP path: Twilio Elastic SIP trunk → OpenAI SIP → ``realtime.call.incoming`` webhook →
accept → a sideband ``RealtimeSession`` attached by ``call_id``.

:mod:`.webhook` verifies and admits deliveries and owns the calls' tasks; :mod:`.call` is one
call's sideband session and its call control. The route is :mod:`telephony.routes.sip`.
"""

from .call import SipCall
from .webhook import SipCalls

__all__ = ["SipCall", "SipCalls"]
