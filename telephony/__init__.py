"""realtime-telephony: a bridge between the phone network and OpenAI Realtime voice agents.

Module map (arrows point at what a module may import)::

    app ─▶ call ─▶ media_stream, audio, call_log, agent
    app ─▶ twiml, config
    media_stream, audio, call_log, config ─▶ nothing of ours
    simulate ─▶ media_stream, audio (public functions only)
"""

__version__ = "0.1.0"
