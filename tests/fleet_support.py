"""The fleet the fleet tests run: real ``server.py`` instances sharing a real Redis, with the
loopback model and the Twilio and OpenAI REST stand-ins, and what the tests do with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import ACCOUNT_SID, AUTH_TOKEN, events, run_server, start_message
from processes import Fleet, RedisServer
from websockets.asyncio.client import ClientConnection, connect

from telephony.observability.call_log import read_call_log
from telephony.simulate import Answer, answer_call
from telephony.testing import (
    LoopbackRealtimeServer,
    OpenAIApiStandIn,
    TwilioApiStandIn,
    tone,
)

SECRET = "fleet-stream-token-secret-0123456789"
DIAL_TOKEN = "fleet-dial-token-0123456789"
SIP_SECRET = "whsec_c2lwLWZsZWV0LXNlY3JldC0wMTIzNDU2Nzg5"
LEASE_S = 3.0
SILENCE = b"\xff"


def default_reply(_turn: int) -> bytes:
    """What the loopback model says unless a test asks otherwise: a 1.5 s tone."""
    return tone(600, 1500)


@dataclass
class Ctx:
    fleet: Fleet
    model: LoopbackRealtimeServer
    twilio: TwilioApiStandIn
    openai: OpenAIApiStandIn

    async def answer(self, name: str, call_sid: str | None = None) -> Answer:
        """The signed Voice webhook, delivered to instance ``name``."""
        return await answer_call(
            self.fleet[name].base_url,
            auth_token=AUTH_TOKEN,
            public_url=self.fleet.public_url,
            call_sid=call_sid,
        )

    def log(self, name: str, call_id: str) -> list[dict[str, Any]]:
        path = self.fleet.log_dir(name) / f"{call_id}.jsonl"
        return read_call_log(path) if path.exists() else []

    async def ended(self, name: str, call_id: str, seconds: float = 10.0) -> list[dict[str, Any]]:
        for _ in range(int(seconds / 0.05)):
            log = self.log(name, call_id)
            if log and log[-1]["event"] == "call.end":
                return log
            await asyncio.sleep(0.05)
        raise AssertionError(f"no call.end for {call_id} on {name}:\n{self.fleet.output()}")

    def fleet_slots(self) -> int:
        count = self.fleet.redis.command("ZCOUNT", "tel:fleet", int(time.time() * 1000), "+inf")
        return int(count)

    async def metrics(self, name: str) -> str:
        def get() -> str:
            with urllib.request.urlopen(self.fleet[name].base_url + "/metrics") as response:
                return response.read().decode()

        return await asyncio.to_thread(get)

    async def post(self, name: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.fleet[name].base_url + path
        data = json.dumps(body or {}).encode()
        headers = {"Authorization": f"Bearer {DIAL_TOKEN}", "Content-Type": "application/json"}

        def send() -> tuple[int, Any]:
            request = urllib.request.Request(url, data=data, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read() or b"{}")

        return await asyncio.to_thread(send)


@contextlib.asynccontextmanager
async def running_fleet(
    tmp_path: Path,
    names: tuple[str, ...] = ("A", "B", "C"),
    own_urls: bool = False,
    model_args: dict[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[Ctx]:
    redis = RedisServer(tmp_path / "redis").start()
    twilio, openai = TwilioApiStandIn(), OpenAIApiStandIn()
    loopback = {"reply": default_reply, **(model_args or {})}
    async with (
        LoopbackRealtimeServer(**loopback) as model,
        run_server(twilio.app) as twilio_url,
        run_server(openai.app) as openai_url,
    ):
        base_env = {
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "OPENAI_BASE_URL": f"{openai_url}/v1",
            "OPENAI_WEBHOOK_SECRET": SIP_SECRET,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_API_BASE_URL": twilio_url,
            "STREAM_TOKEN_SECRET": SECRET,
            "DIAL_API_TOKEN": DIAL_TOKEN,
            "GREETING": "",
            "FLEET_HEARTBEAT": "0.5",
            "FLEET_LEASE": str(LEASE_S),
            "CONTROL_TIMEOUT": "1",
            "HANGUP_GRACE": "4",
            "AUDIO_AHEAD_LIMIT": "0",  # some callers replay faster than real time
            **env,
        }
        fleet = Fleet(tmp_path, redis, base_env, list(names), own_urls)
        try:
            await fleet.start()
            yield Ctx(fleet, model, twilio, openai)
        finally:
            fleet.stop()
            redis.kill()


async def wait_for_attach(ctx: Ctx, name: str, call_id: str) -> None:
    for _ in range(200):
        if events(ctx.log(name, call_id), "model.connected"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{call_id} never attached on {name}")


async def hold_stream(answer: Answer) -> ClientConnection:
    """Open the answer's stream and send ``start``; the call runs until the socket closes."""
    ws = await connect(answer.stream_url, additional_headers=answer.headers)
    await ws.send(start_message(answer.call_sid, answer.parameters))
    return ws


async def end_stream(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZ" + "1" * 32}))
    await ws.close()
