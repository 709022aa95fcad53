"""The agent side of a call: the default agent (:mod:`.default`), the call-control tools and the
context they see (:mod:`.tools`), the per-call session factory (:mod:`.sessions`), the OpenAI
WebSocket model as we use it (:mod:`.openai_model`), and the offline model (:mod:`.local`).

Built on the openai-agents SDK; knows nothing of Twilio or the bridge.
"""
