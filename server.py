"""Run the telephony server: ``python server.py`` (settings from the environment or ``.env``).

SIGTERM (or Ctrl-C) drains: new calls are answered busy and ``/readyz`` says 503, calls in
progress may run up to ``DRAIN_TIMEOUT`` seconds, then each is ended politely and writes its
``call.end``; then the process exits. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from types import FrameType

import uvicorn

from telephony.admission import CallRegistry
from telephony.agent.local import LocalModelUnavailable
from telephony.app import WS_MAX_BYTES, create_app
from telephony.config import ConfigError, load_settings


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains calls before shutting down."""

    def __init__(self, config: uvicorn.Config, registry: CallRegistry, drain_s: float) -> None:
        super().__init__(config)
        self._registry = registry
        self._drain_s = drain_s
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit:
            super().handle_exit(sig, frame)  # second signal: stop now
            return
        logging.getLogger("telephony.server").info("signal %s: draining calls", sig)
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self._registry.drain(self._drain_s)
        finally:
            self.should_exit = True


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app = create_app(settings)
    except (ValueError, LocalModelUnavailable) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=WS_MAX_BYTES,
        ws_per_message_deflate=False,  # base64 μ-law barely compresses; save the CPU
    )
    DrainingServer(config, app.state.services.registry, settings.drain_timeout).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
