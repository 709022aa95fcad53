"""The carrier: Twilio's side of a call.

TwiML answers (:mod:`.twiml`), Media Streams messages (:mod:`.media_stream`), request signatures
(:mod:`.signatures`), live-call updates over REST (:mod:`.rest`) and outbound dialling
(:mod:`.dial`). Knows nothing of OpenAI, the agents SDK or the call bridge; its HTTP routes are
in :mod:`telephony.routes.twilio`.
"""
