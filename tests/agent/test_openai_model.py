"""The SDK's OpenAI WebSocket model as calls use it, against the loopback Realtime server: raw
messages keep their exact wire form, and sending many of them does not hold up the event loop
(openai-agents 0.24 builds a pydantic ``TypeAdapter`` per raw message: 6 ms each here)."""

from __future__ import annotations

import asyncio
import json
import time

from agents.realtime import RealtimePlaybackTracker
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from helpers import wait_for, with_settings

from telephony.agent.default import build_default_agent
from telephony.agent.sessions import SessionFactory
from telephony.agent.tools import CallContext
from telephony.testing import LoopbackRealtimeServer, tone

ITEMS = 400


def item(n: int) -> dict:
    role = "user" if n % 2 else "assistant"
    kind = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": f"turn {n}"}]}


async def test_replayed_items_reach_the_model_verbatim_without_stalling_the_loop(settings) -> None:
    async with LoopbackRealtimeServer(reply=lambda _: tone(600, 100)) as server:
        factory = SessionFactory(
            with_settings(settings, openai_realtime_url=server.url), build_default_agent()
        )
        session = await factory.open(
            RealtimePlaybackTracker(), CallContext(call_sid="CA" + "0" * 32)
        )
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with session:
            connection = server.connections[0]
            ticking = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            for n in range(ITEMS):
                message = {"type": "conversation.item.create", "other_data": {"item": item(n)}}
                await session.model.send_event(RealtimeModelSendRawMessage(message=message))
            await wait_for(lambda: len(connection.received("conversation.item.create")) == ITEMS)
            ticking.cancel()
    created = connection.received("conversation.item.create")
    # the exact wire form: type and item, nothing added, in order
    assert [json.loads(json.dumps(e)) for e in created] == [
        {"type": "conversation.item.create", "item": item(n)} for n in range(ITEMS)
    ]
    # 400 raw messages at 6 ms each held the loop 2.4 s; now they cost well under 1 ms each
    assert max(gaps) < 0.2, f"the event loop stalled {max(gaps) * 1000:.0f} ms"
