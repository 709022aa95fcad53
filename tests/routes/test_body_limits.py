"""Bodies are capped per route before any handler reads them (413), chunked ones too; Twilio's
routes take form-urlencoded bodies only (415); ``POST /calls`` checks its bearer token before it
reads a byte of the body."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import run_server, with_settings, within

from telephony.app import create_app
from telephony.config import Settings

ROUTES = ["/incoming-call", "/call-status", "/openai/webhook", "/calls"]
HUNDRED_MIB = 100 * 1024 * 1024
TOKEN = "dial-secret-0123456789abcdef"


def every_route_on(settings: Settings) -> Settings:
    """Settings with the SIP webhook and POST /calls on (so each route would read a body)."""
    return with_settings(settings, dial_api_token=TOKEN, openai_webhook_secret="whsec_c2VjcmV0")


async def raw_request(port: int, head: bytes, body_chunks: list[bytes] = ()) -> bytes:
    """Send a request by hand (a declared length may lie); returns the response's first line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for chunk in body_chunks:
            writer.write(chunk)
            await writer.drain()
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ROUTES)
async def test_a_declared_100_mib_body_is_refused_before_it_is_sent(settings: Settings, path):
    app = create_app(every_route_on(settings))
    async with run_server(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {HUNDRED_MIB}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        ).encode()
        t0 = time.monotonic()
        status = await raw_request(port, head, [b"a" * 1024])  # the rest never comes
        assert status.startswith(b"HTTP/1.1 413"), status
        # at once, from the declared length: not after BODY_TIMEOUT (10 s) of waiting
        within("body_limits.refused_s", time.monotonic() - t0, 2.0)


@pytest.mark.parametrize("path", ROUTES)
async def test_a_chunked_body_past_the_limit_gets_413(settings: Settings, path):
    app = create_app(every_route_on(settings))
    async with run_server(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        ).encode()
        chunk = b"a" * 65536
        chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(8)]
        status = await raw_request(port, head, chunks)
        assert status.startswith(b"HTTP/1.1 413"), status


@pytest.mark.parametrize("path", ["/incoming-call", "/call-status"])
async def test_twilio_routes_take_form_urlencoded_only(settings: Settings, path):
    app = create_app(settings)
    async with run_server(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        body = b'--x\r\nContent-Disposition: form-data; name="CallSid"\r\n\r\nCA1\r\n--x--\r\n'
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
        ).encode()
        assert (await raw_request(port, head, [body])).startswith(b"HTTP/1.1 415")


async def test_calls_checks_the_bearer_token_before_reading_the_body(settings: Settings):
    app = create_app(every_route_on(settings))
    async with run_server(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        head = (
            b"POST /calls HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Authorization: Bearer wrong\r\nContent-Type: application/json\r\n\r\n"
        )
        # no body follows: had the handler waited for it, this would time out
        assert (await raw_request(port, head)).startswith(b"HTTP/1.1 401")
