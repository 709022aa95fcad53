"""realtime-telephony: a bridge between the phone network and OpenAI Realtime voice agents.

Module map (arrows point at what a module may import)::

    app ─▶ call, sip, registry, security, twiml, dial, metrics, models, agent, config
    call ─▶ media_stream, audio, playback, tracker, call_log, call_metrics, session_log,
            call_control, models, twilio_rest
    sip ─▶ call (features, limits), models, registry, session_log, call_log
    models ─▶ agents.realtime (the SDK), call_control, config
    local_model ─▶ agents.realtime interfaces, audio
    media_stream, audio, call_log, config, playback ─▶ nothing of ours (leaves)
    simulate, timeline, testing, bench/ ─▶ public functions only
"""

__version__ = "0.1.0"
