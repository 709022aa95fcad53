"""No dead air while a tool runs: a 3 s tool gets the hold sound within the delay (+200 ms),
stopped before the reply's first frame and never in the model's input; a 200 ms tool, or one
opted out, gets none. Real time, the loopback model asking for the tool."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent
from helpers import events, final_log, fixture_audio, within

from telephony.agent.tools import without_filler
from telephony.audio.hold import default_hold_sound
from telephony.observability.call_log import seconds_between
from telephony.testing import tone


@function_tool
async def check_payment(order: str) -> str:
    """Check the payment of an order (slow: a payment provider)."""
    await asyncio.sleep(3.0)
    return f"order {order} is paid"


@function_tool
async def order_status(order: str) -> str:
    """The status of an order (fast)."""
    await asyncio.sleep(0.2)
    return f"order {order} shipped"


@function_tool
async def slow_but_silent(order: str) -> str:
    """Slow, and opted out of the hold sound."""
    await asyncio.sleep(3.0)
    return "done"


without_filler(slow_but_silent)
AGENT = RealtimeAgent(
    name="Shop", instructions="Help.", tools=[check_payment, order_status, slow_but_silent]
)
HOLD_FRAMES = {default_hold_sound()[i : i + 160] for i in range(0, 9600, 160)} - {b"\xff" * 160}


async def call_with_tool(live_server, tool: str) -> tuple[Any, list[dict[str, Any]], Any]:
    def script(turn: int) -> tuple[str, dict[str, Any]] | None:
        return (tool, {"order": "A17"}) if turn == 0 else None

    replies = {0: tone(500, 300), 1: tone(700, 800)}
    async with live_server(
        overrides={"greeting": "", "filler_delay": 1.0},
        agent=AGENT,
        reply=lambda turn: replies.get(turn, b""),
        tool_call=script,
    ) as srv:
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=1, tail_s=1.0)
        log = await final_log(srv, result.call_sid)
    return result, log, srv.model.connections[0]


async def test_a_slow_tool_gets_the_hold_sound_until_the_reply(live_server) -> None:
    result, log, connection = await call_with_tool(live_server, "check_payment")
    started = events(log, "tool.start")[0]
    hold = events(log, "hold.started")[0]
    assert seconds_between(started, hold) >= 1.0  # FILLER_DELAY, not sooner
    # and soon after it, well before the 3 s tool ends (a timer, so a wall-clock figure)
    within("hold.start_after_delay_s", seconds_between(started, hold) - 1.0, 0.8)
    stopped = events(log, "hold.stopped")[0]
    assert stopped["why"] == "reply"
    # hold audio covered the whole wait: as much sent as the hold lasted (it runs up to
    # 400 ms ahead; a feeder that fell behind the clock would leave dead air)
    on_ms = seconds_between(hold, stopped) * 1000
    within("hold.behind_ms", on_ms - stopped["sent_ms"], 200)
    # the caller heard it, and none of it after the reply's first frame
    played = result.played
    holds = [at for at, frame in played if frame in HOLD_FRAMES]
    reply = [at for at, frame in played if frame not in HOLD_FRAMES and frame != b"\xff" * 160]
    assert holds and max(holds) < min(at for at in reply if at > holds[0])
    assert len(holds) >= 14  # a loop's tones at least (14 sounding frames; the rest silence)
    # the model's input: the tool's output and nothing of the hold sound, no filler turn
    assert [o["output"] for o in connection.tool_outputs] == ["order A17 is paid"]
    assert all(
        e["item"].get("role") != "assistant"
        for e in connection.received("conversation.item.create")
    )
    assert len(connection.responses) == 2  # the tool call, then the reply: nothing else


async def test_a_fast_or_opted_out_tool_gets_none(live_server) -> None:
    for tool in ("order_status", "slow_but_silent"):
        result, log, _ = await call_with_tool(live_server, tool)
        assert not events(log, "hold.started"), tool
        assert not any(frame in HOLD_FRAMES for _, frame in result.frames), tool
