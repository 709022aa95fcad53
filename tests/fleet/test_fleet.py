"""Fleet behaviour that needs settings of its own or breaks the fleet beyond an instance
restart, each test on its own real ``server.py`` instances sharing a real Redis: stream URLs
per instance, fleet capacity and leases when an instance is killed, and Redis going away
mid-call. The rest runs on one shared fleet, in ``test_shared_fleet.py``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fleet_support import (
    AUTH_TOKEN,
    LEASE_S,
    SILENCE,
    end_stream,
    hold_stream,
    running_fleet,
    wait_for_attach,
)
from helpers import events, fixture_audio, wait_for, within

from telephony.simulate import simulate_call


async def test_with_instance_urls_the_stream_lands_on_its_prewarmed_session(
    tmp_path: Path,
) -> None:
    async with running_fleet(tmp_path, ("A", "B"), own_urls=True, GREETING="Hello.") as ctx:
        answer = await ctx.answer("B")  # the balancer sent the webhook to B
        # the TwiML points the stream at B itself, past the balancer
        assert answer.stream_url == ctx.fleet["B"].base_url.replace("http", "ws") + "/media-stream"
        result = await simulate_call(
            "", SILENCE * 8000, answer=answer, auth_token=AUTH_TOKEN, speed=4, min_turns=1
        )
        log_b = await ctx.ended("B", answer.call_sid)
    prewarm = events(log_b, "prewarm")
    assert [r["outcome"] for r in prewarm] == ["opened", "adopted"], prewarm
    assert len(ctx.model.connections) == 1  # one session for the call, opened at the webhook
    assert result.turns and result.turns[0].frames > 50  # the greeting, from B's session
    assert not ctx.log("A", answer.call_sid)


async def test_fleet_capacity_holds_across_instances_and_a_killed_one_gives_back(
    tmp_path: Path,
) -> None:
    async with running_fleet(tmp_path, FLEET_MAX_CALLS="2") as ctx:
        first = await ctx.answer("A")
        again = await ctx.answer("C", call_sid=first.call_sid)  # Twilio retried the webhook
        assert ctx.fleet_slots() == 1  # one call, one slot
        ws1 = await hold_stream(first.via(ctx.fleet["A"].base_url))
        second = await ctx.answer("B")
        ws2 = await hold_stream(second.via(ctx.fleet["B"].base_url))
        await wait_for(lambda: ctx.fleet_slots() == 2, 5, "two fleet slots")
        with pytest.raises(ValueError, match='Reject reason="busy"'):
            await ctx.answer("C")  # the fleet is full, wherever the webhook lands
        await end_stream(ws1)
        await ctx.ended("A", first.call_sid)
        assert again.parameters["token"] == first.parameters["token"]  # the same stream token
        third = await ctx.answer("C")  # a slot came back
        assert third.parameters["token"]
        assert ctx.fleet_slots() == 2  # B's live call and the third's pending slot
        # B dies without a word: its call's lease lapses on its own
        ctx.fleet["B"].signal(signal.SIGKILL)
        killed_at = time.monotonic()
        while ctx.fleet_slots() > 1:
            assert time.monotonic() - killed_at < LEASE_S + 1.5, "the lease outlived FLEET_LEASE"
            await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):
            await ws2.close()


async def test_redis_outage_mid_call(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, names=("A", "B")) as ctx:
        caller = (fixture_audio("goforward.ulaw") + SILENCE * 8000) * 3  # about 13 s

        async def call_on(name: str) -> tuple[Any, str]:
            answer = await ctx.answer(name)
            result = await simulate_call(
                "", caller, answer=answer.via(ctx.fleet[name].base_url), auth_token=AUTH_TOKEN
            )
            return result, answer.call_sid

        calls = [asyncio.create_task(call_on(n)) for n in ("A", "B")]
        await asyncio.sleep(3)
        ctx.fleet.redis.kill()

        def redis_up(name: str, up: bool) -> Any:
            async def check() -> bool:
                return f"telephony_redis_up {float(up)}" in await ctx.metrics(name)

            return check

        for name in ("A", "B"):  # both instances notice (within a heartbeat or two)
            await wait_for(redis_up(name, False), 10, f"{name} sees Redis down")
        answer = await ctx.answer("A")  # admitted by A's own rules
        during = await simulate_call(
            "",
            fixture_audio("goforward.ulaw"),
            answer=answer.via(ctx.fleet["A"].base_url),
            auth_token=AUTH_TOKEN,
            speed=4,
            min_turns=1,
        )
        assert during.turns
        outage_log = await ctx.ended("A", answer.call_sid)
        assert events(outage_log, "webhook")[0]["degraded"] is True
        assert events(outage_log, "stream.start")[0]["degraded"] is True
        metrics = await ctx.metrics("A")
        assert "telephony_redis_up 0.0" in metrics
        assert 'telephony_degraded_admissions_total{step="stream"} 1.0' in metrics
        ctx.fleet.redis.start()  # the same port, an empty keyspace
        for (result, call_sid), name in zip(await asyncio.gather(*calls), ("A", "B"), strict=True):
            log = await ctx.ended(name, call_sid)
            end = log[-1]
            assert end["reason"] == "caller_hangup"  # the outage ended nothing
            assert end["frames_in"] == result.frames_sent  # no caller frame lost
            assert len(result.turns) >= 3  # replies kept flowing
            # in time: a media path that waited on the dead Redis would stall for its timeouts
            within("fleet.redis_outage_stall_s", result.stall_s, 0.3)
        # shared again within a heartbeat: a replayed token is refused on the other instance
        for name in ("A", "B"):
            await wait_for(redis_up(name, True), 10, f"{name} sees Redis again")
        again = await ctx.answer("A")
        assert ctx.fleet_slots() == 1
        first = await hold_stream(again.via(ctx.fleet["A"].base_url))
        await wait_for_attach(ctx, "A", again.call_sid)  # its nonce was claimed at start
        replay = await hold_stream(again.via(ctx.fleet["B"].base_url))
        await asyncio.wait_for(replay.wait_closed(), 5)
        assert replay.close_code == 1008
        await end_stream(first)
        metrics = await ctx.metrics("B")
        assert "telephony_redis_up 1.0" in metrics
