"""Shared fixtures: the settings of a test app, and a live server (real HTTP + WebSocket on
127.0.0.1) with the loopback model. Helpers the tests import are in ``helpers.py``.

Hypothesis runs derandomized (the same examples every run, no example database, no deadline):
a property test passes or fails for the code, not for the seed or for how busy the machine
was. To look for new counterexamples, run with ``HYPOTHESIS_PROFILE=explore`` (random, 10x the
examples); a failure found there becomes an ``@example`` of its test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from helpers import AUTH_TOKEN, LiveServer, free_port, run_server, with_settings

from telephony.app import create_app
from telephony.config import CallLimits, Settings
from telephony.testing import LoopbackRealtimeServer

hypothesis.settings.register_profile(
    "suite", derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis.settings.register_profile(
    "explore", max_examples=1000, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# Test modules whose tests share a costly session-scoped fixture (a fleet of ``server.py``
# processes): xdist sends all of such a module's tests to one worker, so the fixture starts
# once a run; every other test is scheduled one by one, as ``--dist load`` does. (xdist's own
# way, ``xdist_group`` with ``--dist loadgroup``, renames items through ``item._nodeid``, which
# pytest 9.2 no longer reads: the group was spread over every worker.)
ONE_WORKER_MODULES = frozenset({"tests/fleet/test_shared_fleet.py"})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None  # a --dist the caller chose is kept
    from xdist.scheduler import LoadScopeScheduling

    class ModulesOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return ModulesOnOneWorker(config, log)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    for name in ("OPENAI_API_KEY", "PUBLIC_URL", "TWILIO_AUTH_TOKEN", "OPENAI_REALTIME_URL"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()  # known before the server starts: PUBLIC_URL names it, as Twilio sees it
    return Settings(
        openai_api_key="sk-test-not-a-real-key",
        twilio_auth_token=AUTH_TOKEN,
        public_url=f"http://127.0.0.1:{port}",
        port=port,
        call_log_dir=tmp_path / "calls",
        greeting="",  # tests that want the greeting turn it on
        audio_ahead_limit=0,  # the simulator replays up to 8x faster than real time
        # the model socket's liveness watchdog (a ping after 0.5 s of model silence, dropped
        # with no pong in 1 s) is a wall-clock rule, and the loopback model shares the test's
        # event loop: a loop starved on a busy machine missed a pong and a test that is not
        # about liveness had its session replaced mid-call. Those tests give it 5 s; the
        # liveness tests (tests/bridge/test_renewal.py) set the production 1 s themselves.
        model_ping_timeout=5.0,
    )


@pytest.fixture
def live_server(settings: Settings) -> Callable[..., Any]:
    """Factory: ``async with live_server(**loopback_kwargs) as srv`` runs model + app."""

    @contextlib.asynccontextmanager
    async def start(
        limits: CallLimits | None = None,
        overrides: dict[str, Any] | None = None,
        agent: Any = None,
        **loopback: Any,
    ) -> AsyncIterator[LiveServer]:
        async with LoopbackRealtimeServer(**loopback) as model:
            app_settings = with_settings(
                settings, **{"openai_realtime_url": model.url, **(overrides or {})}
            )
            app = create_app(app_settings, limits=limits, agent=agent)
            async with run_server(app, app_settings.port) as base_url:
                yield LiveServer(base_url, app, app_settings, model)

    return start
