"""Connections that never finish a request are closed in time, a flood of them cannot starve
``/healthz``, and media sockets waiting for ``start`` are visible and cannot keep a real call
out."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import AUTH_TOKEN, SILENCE, wait_for, within
from processes import ServerProcess
from websockets.asyncio.client import connect

from telephony.simulate import answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

HEADER_TIMEOUT = 1.0


def healthz(base_url: str) -> tuple[float, dict]:
    t0 = time.monotonic()
    with urllib.request.urlopen(base_url + "/healthz", timeout=5) as response:
        body = json.loads(response.read())
    return time.monotonic() - t0, body


def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        "ALLOW_UNSIGNED": "false",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "BODY_TIMEOUT": str(HEADER_TIMEOUT),
        "MAX_CONNECTIONS": "40",
        "MAX_CONCURRENT_CALLS": "2",
        "CALL_LOG_DIR": str(tmp_path / "calls"),
    }


@pytest.fixture
def server(tmp_path: Path):
    process = ServerProcess(server_env(tmp_path), tmp_path)  # each test: await server.up()
    yield process
    process.stop()


async def test_silent_and_slow_sockets_are_closed_and_healthz_keeps_answering(server) -> None:
    await server.up()
    port = server.port
    sockets = []
    for i in range(150):  # far more than MAX_CONNECTIONS
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if i % 3 == 1:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        elif i % 3 == 2:
            writer.write(b"POST /incoming-call HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            writer.write(b"Content-Type: application/x-www-form-urlencoded\r\n\r\nCallSid=CA")
        sockets.append((time.monotonic(), reader, writer))
        if i % 10 == 0:
            elapsed, _ = await asyncio.to_thread(healthz, server.base_url)
            # a server whose slots the sockets held would not answer before they timed out
            within("connections.healthz_s", elapsed, 1.0, f"with {i} sockets open")
    for opened, reader, writer in sockets:
        remaining = opened + HEADER_TIMEOUT + 1.0 - time.monotonic()
        data = b"x"
        try:
            data = await asyncio.wait_for(reader.read(), max(remaining, 0.05))
        except (TimeoutError, ConnectionError):
            pass
        assert data == b"", "a socket outlived the header/body timeout"
        writer.close()
    elapsed, body = await asyncio.to_thread(healthz, server.base_url)
    assert body["status"] == "ok"
    within("connections.healthz_s", elapsed, 1.0, "after the sockets closed")


async def test_idle_media_sockets_cannot_keep_a_real_call_out(tmp_path: Path) -> None:
    """Issue 26, finding 2: the handshake's signature is the same for every call, so a
    stranger who saw one can open media sockets and never send ``start``. Before, four such
    sockets (= ``MAX_CONCURRENT_CALLS``) made a real call's stream get HTTP 403. Now a new
    socket evicts the oldest idle one (1008), and the real call streams and hears its greeting."""
    greeting = tone(700, 600)
    async with LoopbackRealtimeServer(reply=lambda _: greeting) as model:
        env = {
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "GREETING": "Hello.",
            "MAX_CONCURRENT_CALLS": "4",
            "CALL_LOG_DIR": str(tmp_path / "calls"),
        }
        server = ServerProcess(env, tmp_path)
        try:
            await server.up()
            answer = await answer_call(server.base_url, auth_token=AUTH_TOKEN)
            idle = [
                await connect(answer.stream_url, additional_headers=answer.headers)
                for _ in range(4)
            ]
            _, body = await asyncio.to_thread(healthz, server.base_url)
            assert body["awaiting_start"] == 4
            result = await simulate_call(
                server.base_url, SILENCE * 8000 * 2, auth_token=AUTH_TOKEN, min_turns=1
            )
            # the oldest idle socket made room, closed as a policy violation
            await asyncio.wait_for(idle[0].wait_closed(), 5)
            assert idle[0].close_code == 1008
            _, body = await asyncio.to_thread(healthz, server.base_url)
            assert body["awaiting_start"] <= 3
            for ws in idle:
                await ws.close()
        finally:
            server.stop()
    assert result.stream_sid and result.turns, "the real call did not stream"
    heard = result.turns[0]
    assert heard.frames * 20 >= 600  # the whole greeting reached the caller
    # one session per webhook (MODEL_PREWARM: the idle sockets' call and the real one); the
    # idle sockets themselves never opened one
    assert len(model.connections) == 2


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def non_reader(port: int, requests: bytes) -> socket.socket:
    """A client that sends ``requests`` in one write and never reads (a 4 KiB receive buffer,
    so the server's responses back up in the server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(requests)
    return sock


ATTACKS = [
    (400, "/healthz", "the review's: 400 requests pipelined in one write"),
    (4, "/metrics", "4 requests for /metrics each, their answers left unread"),
    (1, "/healthz", "one request each, then idle (kept alive)"),
]


async def test_clients_that_never_read_cannot_hold_every_connection(tmp_path: Path) -> None:
    """Issue 26, finding 1: MAX_CONNECTIONS (20 here) connections that send complete requests
    and never read. Before, uvicorn blocked in ``send`` with no timeout, the guard found nothing
    to evict, and ``/healthz`` and signed webhooks were refused for as long as the client
    wished; evicted connections kept their descriptors (``close()`` waits for unsent data).
    Three attacks in turn on one server (each server start costs seconds of CPU)."""
    env = {**server_env(tmp_path), "MAX_CONNECTIONS": "20", "MAX_CONCURRENT_CALLS": "8"}
    server = ServerProcess(env, tmp_path)
    await server.up()
    assert server.process is not None
    pid = server.process.pid
    before = open_fds(pid)
    try:
        for requests, path, attack in ATTACKS:
            one = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            sockets = [non_reader(server.port, one * requests) for _ in range(20)]
            try:
                await asyncio.sleep(0.5)  # all in, and the server answered what it could
                elapsed, body = await asyncio.to_thread(healthz, server.base_url)
                within("connections.healthz_under_non_readers_s", elapsed, 1.0, attack)
                assert body["status"] == "ok"
                t0 = time.monotonic()
                answer = await answer_call(server.base_url, auth_token=AUTH_TOKEN)
                took = time.monotonic() - t0
                within("connections.webhook_under_non_readers_s", took, 1.0, attack)
                assert answer.call_sid
                # while the clients hold on, their descriptors are freed (pipelined: closed at
                # once; unread: after BODY_TIMEOUT; idle: after uvicorn's keep-alive timeout)
                freed = f"descriptors freed ({attack})"
                await wait_for(lambda: open_fds(pid) <= before + 2, 8, freed)
            finally:
                for sock in sockets:
                    sock.close()
    finally:
        server.stop()
