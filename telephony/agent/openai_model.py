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
    """The SDK's OpenAI WebSocket model, with permessage-deflate off and a socket that is found
    dead in about a second.

    - A call sends 50 base64 audio frames a second each way; they barely compress, and
      compressing each one costs CPU and latency (about 3 % of the server's time under load, by
      py-spy).
    - websockets pings the server every ``ping_interval`` seconds and drops the connection when
      no pong comes within ``ping_timeout`` (a socket that stopped answering, TCP gone quiet).
    - ``close_timeout`` bounds the close handshake: when the server sends a close frame but
      keeps TCP open, websockets would wait 10 s before anyone saw the socket was gone (and a
      send would stall as long); the SDK's transport options do not expose it.

    Otherwise the connection is the SDK's own (openai-agents 0.24: same headers, user agent and
    size limit).

    Args:
        ping_interval / ping_timeout / close_timeout: seconds (``MODEL_PING_INTERVAL``,
            ``MODEL_PING_TIMEOUT``, ``MODEL_CLOSE_TIMEOUT``).
    """

    def __init__(
        self, ping_interval: float = 1.0, ping_timeout: float = 1.0, close_timeout: float = 1.0
    ) -> None:
        super().__init__(
            transport_config={"ping_interval": ping_interval, "ping_timeout": ping_timeout}
        )
        self._close_timeout = close_timeout

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
            "close_timeout": self._close_timeout,
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
