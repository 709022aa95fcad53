"""The OpenAI Realtime WebSocket model as a phone call uses it."""

from __future__ import annotations

from typing import Any

import websockets
from agents.realtime.openai_realtime import (
    _USER_AGENT,
    OpenAIRealtimeWebSocketModel,
    TransportConfig,
)
from websockets.asyncio.client import ClientConnection

__all__ = ["PhoneRealtimeModel"]


class PhoneRealtimeModel(OpenAIRealtimeWebSocketModel):
    """The SDK's OpenAI WebSocket model, with permessage-deflate off.

    A call sends 50 base64 audio frames a second each way; they barely compress, and
    compressing each one costs CPU and latency (about 3 % of the server's time under load, by
    py-spy). Otherwise the connection is the SDK's own (openai-agents 0.24: same headers, user
    agent, size limit and transport options).
    """

    async def _create_websocket_connection(
        self,
        url: str,
        headers: dict[str, str],
        transport_config: TransportConfig | None = None,
    ) -> ClientConnection:
        options: dict[str, Any] = {
            "user_agent_header": _USER_AGENT,
            "additional_headers": headers,
            "max_size": 8 * 1024 * 1024,
            "compression": None,
        }
        config = transport_config or {}
        for ours, theirs in (
            ("ping_interval", "ping_interval"),
            ("ping_timeout", "ping_timeout"),
            ("open_timeout", "handshake_timeout"),
            ("max_size", "max_size"),
        ):
            if theirs in config:
                options[ours] = config[theirs]  # type: ignore[literal-required]
        return await websockets.connect(url, **options)
