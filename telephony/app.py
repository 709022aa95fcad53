"""The FastAPI app: builds the shared services and includes the routers.

Routes are in :mod:`telephony.routes`; the services they share are built by
:func:`telephony.services.build_services` and live on ``app.state.services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from agents.realtime import RealtimeAgent
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from .agent.openai_model import build_sdk_adapters
from .agent.sessions import ModelFactory
from .config import CallLimits, Settings, load_settings
from .observability.logs import LOG_FORMAT, install_redaction
from .observability.retention import sweep_forever
from .routes import calls, console, ops, phone, sip, twilio
from .routes.headers import ConsoleHeaders
from .routes.limits import BodyLimits
from .services import Services, build_services
from .twilio.trial import TRIAL_KEY_FILE

__all__ = ["WS_MAX_BYTES", "configure_logging", "create_app", "create_worker_app"]

logger = logging.getLogger("telephony.app")

WS_MAX_BYTES = 64 * 1024  # uvicorn's ws_max_size: Twilio's media messages are about 300 bytes


def create_app(
    settings: Settings | None = None,
    *,
    agent: RealtimeAgent | None = None,
    model_factory: ModelFactory | None = None,
    limits: CallLimits | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; read from the environment when omitted.
        agent: the agent for every call; else ``AGENT`` (``module:attribute``), else the default.
        model_factory: a zero-argument callable making a ``RealtimeModel`` per call (tests, or
            other transports); defaults to the SDK's OpenAI WebSocket model.
        limits: per-call limits; by default from the settings (idle timeout, maximum duration).

    Raises:
        ValueError: a bad ``AGENT``.
        telephony.agent.local.LocalModelUnavailable: the offline model's extra is missing.
    """
    # one BLAS thread: calls run side by side on the event loop, so a numpy solve or product
    # gains nothing from more, while OpenBLAS's spinning threads take cores from the other
    # calls and workers (measured 2026-12-05 with an echo fit's 128-tap least-squares solves
    # per frame, since taken out: their CPU doubled, and a worker left /readyz unanswered
    # for 5 s)
    threadpool_limits(limits=1, user_api="blas")
    services = build_services(
        settings or load_settings(), agent=agent, model_factory=model_factory, limits=limits
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _announce(services)
        build_sdk_adapters()  # not at the first call's first events, the event loop blocked
        await services.state.start()
        retention = _retention(services)
        try:
            yield
            await services.registry.drain(0, goodbye_s=services.settings.drain_timeout or 5.0)
        finally:
            if services.prewarm is not None:
                await services.prewarm.close()
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            await services.state.stop()
            if services.logs.traces is not None:
                services.logs.traces.shutdown()

    app = FastAPI(
        title="realtime-telephony",
        lifespan=lifespan,
        docs_url=None,  # no public API browser: every route here is for Twilio, OpenAI or ops
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodyLimits)
    app.add_middleware(ConsoleHeaders)
    app.state.services = services
    if services.logs.traces is not None:  # OTEL_* set: FastAPI's spans, the call's under them
        services.logs.traces.instrument(app)
    routers = (twilio.router, calls.router, sip.router, ops.router, console.router, phone.router)
    for router in routers:
        app.include_router(router)
    return app


def _retention(services: Services) -> asyncio.Task[None] | None:
    """The hourly sweep of old logs and recordings (``RETENTION_DAYS``), if set."""
    days = services.settings.retention_days
    if not days:
        return None
    directory = services.settings.call_log_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # personal data
    forget = services.console.forget if services.console is not None else None
    return asyncio.create_task(sweep_forever(directory, days, forget), name="retention")


def configure_logging(settings: Settings) -> None:
    """The server log: ``LOG_LEVEL``, one line per record, to standard error, with every
    configured secret redacted (call again once uvicorn has set up its own handlers)."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    install_redaction(settings.secret_values(), settings.log_level)


def create_worker_app() -> FastAPI:
    """The app of one worker process of ``WORKERS=N``: settings from the environment, with the
    worker's pid appended to ``INSTANCE_ID`` so that every worker is its own fleet instance."""
    settings = load_settings()
    configure_logging(settings)
    suffix = f"-{os.getpid()}"
    if not settings.instance_id.endswith(suffix):
        settings.instance_id += suffix
    return create_app(settings)


def _announce(services: Services) -> None:
    """Say at start-up what would surprise an operator: unsigned mode, no token, no OpenAI."""
    settings = services.settings
    if services.checker is None and settings.allow_unsigned:
        logger.warning(
            "DEVELOPMENT MODE (ALLOW_UNSIGNED=true): unsigned Twilio requests are accepted. "
            "Never expose this server through a tunnel in this mode."
        )
    elif services.trial:
        logger.warning(
            "TRIAL MODE (no TWILIO_AUTH_TOKEN): only local calls signed with %s are taken "
            "(python -m telephony.simulate signs with it); Twilio's requests are refused (403) "
            "until TWILIO_AUTH_TOKEN and PUBLIC_URL are set.",
            settings.call_log_dir / TRIAL_KEY_FILE,
        )
    if settings.console_token is not None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        logger.info(
            "console: http://%s:%d/console (sign in with CONSOLE_TOKEN; call the agent from "
            "there: /console/phone)",
            host,
            settings.port,
        )
    if settings.twilio_auth_token is not None and settings.twilio_account_sid is None:
        logger.warning(
            "TWILIO_ACCOUNT_SID is not set: signatures are checked, but end_call and "
            "transfer_call cannot hang up or transfer through Twilio (the stream just closes), "
            "and outbound calls cannot be placed"
        )
    if services.backend == "local":
        logger.warning(
            "No OpenAI: calls are answered by the EMBEDDED OFFLINE MODEL (a read-back demo, "
            "not an assistant). Set OPENAI_API_KEY for the real agent."
        )
    elif settings.openai_api_key is None and services.backend == "openai":
        logger.warning("OPENAI_API_KEY is not set: the model cannot connect")
