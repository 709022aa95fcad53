"""Test helpers shipped with the package: a loopback OpenAI Realtime server (no network)."""

from .realtime_server import LoopbackRealtimeServer, RealtimeConnection, tone

__all__ = ["LoopbackRealtimeServer", "RealtimeConnection", "tone"]
