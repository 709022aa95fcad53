"""Shared fixtures: a live server (real HTTP + WebSocket on 127.0.0.1) and the loopback model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from telephony.app import WS_MAX_BYTES, create_app
from telephony.call import CallLimits
from telephony.call_log import read_call_log
from telephony.config import Settings
from telephony.simulate import Answer, SimulationResult, answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer

FIXTURES = Path(__file__).parent / "fixtures"


async def ended_log(log_dir: Path, call_id: str, seconds: float = 6.0) -> list[dict[str, Any]]:
    """A call's log once its last record is ``call.end`` (polls the file); fails if it never is."""
    path = log_dir / f"{call_id}.jsonl"
    for _ in range(int(seconds / 0.02)):
        if path.exists() and read_call_log(path)[-1]["event"] == "call.end":
            return read_call_log(path)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no call.end for {call_id}")


def fixture_audio(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


AUTH_TOKEN = "test-auth-token-0123456789"


@dataclass
class LiveServer:
    base_url: str
    app: Any
    settings: Settings
    model: LoopbackRealtimeServer

    async def call(self, audio: bytes, **kwargs: Any) -> SimulationResult:
        """One simulated Twilio call, signed as Twilio signs."""
        return await simulate_call(self.base_url, audio, auth_token=AUTH_TOKEN, **kwargs)

    async def answer(self, **kwargs: Any) -> Answer:
        """Post a signed webhook; returns the stream URL, parameters and handshake headers."""
        return await answer_call(self.base_url, auth_token=AUTH_TOKEN, **kwargs)


@contextlib.asynccontextmanager
async def run_server(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        ws_max_size=WS_MAX_BYTES,  # as server.py runs it
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    for name in ("OPENAI_API_KEY", "PUBLIC_URL", "TWILIO_AUTH_TOKEN", "OPENAI_REALTIME_URL"):
        monkeypatch.delenv(name, raising=False)
    return Settings(
        openai_api_key="sk-test-not-a-real-key",
        twilio_auth_token=AUTH_TOKEN,
        call_log_dir=tmp_path / "calls",
        greeting="",  # tests that want the greeting turn it on
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
            update = {"openai_realtime_url": model.url, **(overrides or {})}
            values = {name: getattr(settings, name) for name in Settings.model_fields}
            app_settings = Settings(**{**values, **update})  # validated, unlike model_copy
            app = create_app(app_settings, limits=limits, agent=agent)
            async with run_server(app) as base_url:
                yield LiveServer(base_url, app, app_settings, model)

    return start
