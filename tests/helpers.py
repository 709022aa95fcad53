"""Helpers shared by the tests: a live server, call logs, the Twilio stand-in, Twilio messages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from websockets.frames import Frame
from websockets.streams import StreamReader

from telephony.app import WS_MAX_BYTES
from telephony.config import Settings
from telephony.connections import GuardLimits, guard
from telephony.observability.call_log import read_call_log
from telephony.simulate import Answer, SimulationResult, answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, TwilioApiStandIn

FIXTURES = Path(__file__).parent / "fixtures"
AUTH_TOKEN = "test-auth-token-0123456789"
ACCOUNT_SID = "AC" + "0" * 32  # the account the simulator calls from
SILENCE = b"\xff"  # one μ-law byte of silence


def fixture_audio(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def events(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The call-log records of one event type."""
    return [r for r in records if r["event"] == name]


async def ended_log(log_dir: Path, call_id: str, seconds: float = 6.0) -> list[dict[str, Any]]:
    """A call's log once its last record is ``call.end`` (polls the file); fails if it never is."""
    path = log_dir / f"{call_id}.jsonl"
    for _ in range(int(seconds / 0.02)):
        records = read_call_log(path) if path.exists() else []
        if records and records[-1]["event"] == "call.end":
            return read_call_log(path)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no call.end for {call_id}")


async def final_log(srv: Any, call_sid: str) -> list[dict[str, Any]]:
    """The ended log of a call on a :class:`LiveServer` (or anything with ``.settings``)."""
    return await ended_log(srv.settings.call_log_dir, call_sid)


async def wait_for(predicate: Callable[[], Any], seconds: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` every 20 ms until it is true (an awaitable result is awaited);
    fails after ``seconds``, saying ``what`` was waited for. For what happens *eventually*:
    a fixed sleep before an assertion is a bet on how fast the machine is today."""
    for _ in range(int(seconds / 0.02)):
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met in {seconds} s: {what or predicate}")


def within(figure: str, value: float, bound: float, why: Any = "") -> None:
    """Assert ``value <= bound`` for a wall-clock figure that a test bounds on purpose, and
    note the value in ``$TEST_FIGURES`` when set (``bench/flaky.py --figures`` sets it and
    prints each figure's distribution over its runs: the measurement behind the bound)."""
    path = os.environ.get("TEST_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"figure": figure, "value": value, "bound": bound}) + "\n")
    assert value <= bound, f"{figure}: {value:.3f} over {bound}. {why}"


def note_figure(figure: str, value: float) -> None:
    """Note a wall-clock figure that a test measures but does not bound (its bound is a
    benchmark's), in ``$TEST_FIGURES`` when set: ``bench/flaky.py`` shows its distribution
    with the bound ``None``."""
    path = os.environ.get("TEST_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"figure": figure, "value": value, "bound": None}) + "\n")


def with_settings(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy of ``settings`` with ``overrides`` (``model_copy`` does not validate)."""
    values = {name: getattr(settings, name) for name in Settings.model_fields}
    return Settings(**{**values, **overrides})


def start_message(
    call_sid: str, parameters: dict[str, str], stream_sid: str = "MZ" + "1" * 32
) -> str:
    """A Twilio ``start`` message for ``call_sid`` with the TwiML's ``<Parameter>`` values."""
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": ACCOUNT_SID,
                "callSid": call_sid,
                "customParameters": parameters,
            },
        }
    )


@dataclass
class LiveServer:
    base_url: str
    app: Any
    settings: Settings
    model: LoopbackRealtimeServer

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def call(self, audio: bytes, **kwargs: Any) -> SimulationResult:
        """One simulated Twilio call, signed as Twilio signs."""
        return await simulate_call(self.base_url, audio, auth_token=AUTH_TOKEN, **kwargs)

    async def answer(self, **kwargs: Any) -> Answer:
        """Post a signed webhook; returns the stream URL, parameters and handshake headers."""
        return await answer_call(self.base_url, auth_token=AUTH_TOKEN, **kwargs)


PORT_BLOCK = 1000
_next_port = itertools.count(random.Random(os.getpid()).randrange(PORT_BLOCK))


def free_port() -> int:
    """A free loopback port for a test's server. Not one the kernel hands out (an ephemeral
    port, 32768-60999 here, may be taken by any client socket between this check and the
    server's bind): each xdist worker takes ports from a block of its own below that range,
    so two tests never race for one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 20000 + (int(worker) if worker.isdigit() else 0) % 12 * PORT_BLOCK
    for _ in range(PORT_BLOCK):
        port = base + next(_next_port) % PORT_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # something else listens there
            return port
    raise AssertionError(f"no free port in {base}-{base + PORT_BLOCK - 1}")


@contextlib.asynccontextmanager
async def run_server(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a loopback port (a free one by default), with the
    connection guard as ``server.py`` runs it; yields the base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws_max_size=WS_MAX_BYTES,  # as server.py runs it
        ws_per_message_deflate=False,
    )
    guard(config, GuardLimits())
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


@contextlib.asynccontextmanager
async def twilio_api() -> AsyncIterator[tuple[TwilioApiStandIn, dict[str, Any]]]:
    """Twilio's REST API stand-in; yields it and the settings that point the app at it."""
    stand_in = TwilioApiStandIn()
    async with run_server(stand_in.app) as url:
        yield stand_in, {"twilio_account_sid": ACCOUNT_SID, "twilio_api_base_url": url}


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A ``/metrics`` exposition as ``{(sample name, sorted labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def parse_client_frames(wire: bytes) -> list[Frame]:
    """Every frame in ``wire`` as a server reads a client's (masked), by websockets' parser."""
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    frames = []
    while reader.buffer:  # what is left unread
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a frame was cut short")
    return frames
