"""Seeing calls: the per-call log, the session recorder, per-call metrics, Prometheus metrics and
the timeline picture.

Fed by the call paths through plain calls and callbacks; knows nothing of the bridge, Twilio or
OpenAI transports.
"""
