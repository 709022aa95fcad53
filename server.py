"""Run the telephony server: ``python server.py`` (settings from the environment or ``.env``).

``WORKERS=N`` (with ``REDIS_URL``) runs N worker processes on one port, uvicorn's own
multiprocess supervisor keeping them alive; each worker is one fleet instance. Each worker
listens on its own ``SO_REUSEPORT`` socket, so the kernel spreads connections evenly over them
(one shared socket lets the busiest worker take most of them).

SIGTERM (or Ctrl-C) drains every worker: new calls are answered busy (in a fleet: sent to the
other instances) and ``/readyz`` says 503, calls in progress may run up to ``DRAIN_TIMEOUT``
seconds, then each is ended politely and writes its ``call.end``; then the process exits. A
second signal, a second or more after the first, exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import secrets
import socket
import sys
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

from telephony.config import ConfigError, Settings, load_settings, misspelled_variables
from telephony.preflight import port_problem, preflight, report

WORKER_STARTUP_S = 60
REPEAT_SIGNAL_S = 1.0  # a signal this soon after the first is the same request (Ctrl-C hits
# the whole process group, and the supervisor forwards SIGTERM too)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains calls before shutting down."""

    def __init__(
        self, config: uvicorn.Config, drain_s: float | None = None, reuse_port: bool = False
    ) -> None:
        super().__init__(config)
        self._drain_s = drain_s
        self._reuse_port = reuse_port
        self._drain_task: asyncio.Task[None] | None = None
        self._first_signal_at = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit:
            if time.monotonic() - self._first_signal_at >= REPEAT_SIGNAL_S:
                super().handle_exit(sig, frame)  # a second signal: stop now
            return
        logging.getLogger("telephony.server").info("signal %s: draining calls", sig)
        self._first_signal_at = time.monotonic()
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain())

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self._reuse_port:
            sockets = [_reuse_port_socket(self.config.host, self.config.port)]
        logging.getLogger("telephony.server").info("serving with %s", runtime(self.config))
        await super().startup(sockets=sockets)

    async def _drain(self) -> None:
        try:
            services = _services_of(self.config.loaded_app)
            drain_s = services.settings.drain_timeout if self._drain_s is None else self._drain_s
            await services.registry.drain(drain_s)
        finally:
            self.should_exit = True


def runtime(config: uvicorn.Config) -> str:
    """What carries the calls in this process, e.g. ``event loop uvloop, HTTP httptools,
    WebSocket websockets-sansio`` (uvicorn falls back to asyncio, h11 and others silently when
    uvloop or httptools is missing: each costs CPU on every frame)."""
    loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    http = "httptools" if issubclass(config.http_protocol_class, HttpToolsProtocol) else "h11"
    ws = config.ws_protocol_class
    ws_name = (
        ws.__module__.rpartition(".")[2].removesuffix("_impl").replace("_", "-") if ws else "none"
    )
    return f"event loop {loop}, HTTP {http}, WebSocket {ws_name}"


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with ``SO_REUSEPORT``: every worker binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _services_of(app: Any) -> Any:
    """The ``Services`` of the app uvicorn loaded (under its middleware wrappers)."""
    while not hasattr(app, "state") and hasattr(app, "app"):
        app = app.app
    return app.state.services


class DrainingProcess(multiprocess.Process):
    """A uvicorn worker process that runs a :class:`DrainingServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config, reuse_port=True)
        return self._server


def _uvicorn_config(settings: Settings, app: Any, **kwargs: Any) -> uvicorn.Config:
    from telephony.app import WS_MAX_BYTES, configure_logging
    from telephony.connections import GuardLimits, guard

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=WS_MAX_BYTES,
        ws_per_message_deflate=False,  # base64 μ-law barely compresses; save the CPU
        **kwargs,
    )
    limits = GuardLimits(settings.header_timeout, settings.body_timeout, settings.connection_limit)
    configure_logging(settings)  # again: uvicorn.Config replaced its loggers' handlers
    return guard(config, limits)


def _raise_file_limit(needed: int) -> None:
    """Raise the soft open-file limit towards the hard one: each connection is a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 256  # model sockets, Redis, logs, the interpreter's own
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            logging.getLogger("telephony.server").warning(
                "open-file limit %d is below the %d this server may need: raise it (ulimit -n)",
                new,
                wanted,
            )


HELP = """\
Run the telephony server (settings from the environment or a .env file here).

The settings that matter first:
  OPENAI_API_KEY       the real agent; without it the embedded offline model answers
  TWILIO_AUTH_TOKEN    your Twilio number's calls (with PUBLIC_URL and TWILIO_ACCOUNT_SID);
                       without it: trial mode, local simulated calls only
  PUBLIC_URL           the https:// URL Twilio reaches (your tunnel's or your domain's)
  HOST, PORT           where it listens (127.0.0.1:8000; 0.0.0.0 behind a load balancer)
  CONSOLE_TOKEN        the operator console at /console and its browser call

Every setting, with its default: the README's "Configuration" (or python -m telephony.config).
"""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python server.py", description=HELP, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the port and (where set) the Twilio and OpenAI credentials,\n"
        "one line each, then exit (0: all fine)",
    )
    parser.add_argument(
        "--secret",
        action="store_true",
        help="print a new random secret (for STREAM_TOKEN_SECRET, CONSOLE_TOKEN, ...) and exit",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.secret:
        print(secrets.token_urlsafe(32))
        return 0
    try:  # before the heavy imports: a setting's mistake is said at once
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        text, status = report(preflight(settings))
        print(text)
        return status
    for line in misspelled_variables():
        print(f"warning: {line}", file=sys.stderr)
    problem = port_problem(settings.host, settings.port)
    if problem is not None:  # before the models load
        print(f"cannot start: {problem}", file=sys.stderr)
        return 2
    from telephony.agent.local import LocalModelUnavailable
    from telephony.app import configure_logging, create_app

    configure_logging(settings)
    _raise_file_limit(2 * settings.connection_limit)  # each connection, and each call's model
    if settings.workers > 1:  # each worker builds its own app (and loads its own models)
        config = _uvicorn_config(
            settings,
            "telephony.app:create_worker_app",
            factory=True,
            workers=settings.workers,
            # a worker answers the supervisor's health pings only once its imports (and the
            # offline models) are loaded: 10-30 s on a busy machine, where uvicorn's 5 s would
            # kill it and start another, forever
            timeout_worker_healthcheck=WORKER_STARTUP_S,
        )
        multiprocess.Process = DrainingProcess  # type: ignore[misc]  # the supervisor's workers
        multiprocess.Multiprocess(config, sockets=[]).run()  # each worker binds its own
        return 0
    try:
        app = create_app(settings)
    except (ValueError, LocalModelUnavailable) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    DrainingServer(_uvicorn_config(settings, app)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
