"""The fleet-state contract, against a real Redis-protocol server (and the in-process state where
the contract is the same): single-use claims, fleet slots with leases, owners, control
messages with replies, and what happens when Redis goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for, within
from processes import RedisServer

from telephony.fleet import FleetState, FleetUnavailable, LocalState
from telephony.fleet.redis_state import RedisState
from telephony.fleet.seal import ControlSeal

HEARTBEAT_S = 0.2
LEASE_S = 1.0
SECRET = b"fleet-test-secret-of-at-least-32-chars"


def redis_state(url: str, name: str) -> RedisState:
    return RedisState(url, name, lease_s=LEASE_S, heartbeat_s=HEARTBEAT_S, seal=ControlSeal(SECRET))


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


async def started(redis: RedisServer, name: str) -> RedisState:
    state = redis_state(redis.url, name)
    await state.start()
    return state


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisState, RedisState]]:
    a, b = await started(redis_server, "A"), await started(redis_server, "B")
    yield a, b
    await a.stop()
    await b.stop()


@pytest.mark.parametrize("kind", ["local", "redis"])
async def test_claims_are_single_use_until_they_expire(redis_server, kind: str) -> None:
    state: FleetState = LocalState("A") if kind == "local" else await started(redis_server, "A")
    try:
        soon = time.time() + 2.0  # room for four round trips on a loaded machine
        assert await state.claim("nonce:x", soon) is True
        assert await state.claim("nonce:x", soon) is False  # a replay
        assert await state.claim("nonce:y", soon) is True
        await state.unclaim("nonce:y")
        assert await state.claim("nonce:y", soon) is True  # forgotten: a redelivery may retry
        await asyncio.sleep(soon - time.time() + 0.1)
        assert await state.claim("nonce:x", time.time() + 1) is True  # expired
    finally:
        await state.stop()


async def test_a_claim_holds_across_instances(pair) -> None:
    a, b = pair
    expires = time.time() + 5
    first = await asyncio.gather(*(s.claim("sip:call:rtc_1", expires) for s in (a, b, a, b)))
    assert sorted(first) == [False, False, False, True]


async def test_fleet_slots_are_capped_idempotent_and_freed(pair, redis_server) -> None:
    a, b = pair
    assert await a.reserve("CA1", 5, max_calls=2)
    assert await a.reserve("CA1", 5, max_calls=2)  # a retried webhook: the same slot
    assert await b.reserve("CA2", 5, max_calls=2)
    assert not await b.reserve("CA3", 5, max_calls=2)  # the fleet is full
    assert redis_server.command("ZCARD", "tel:fleet") == 2
    await a.release("CA1")
    assert await b.reserve("CA3", 5, max_calls=2)
    assert await a.reserve("CA4", 5, max_calls=None)  # no fleet limit


async def test_a_lease_not_renewed_lapses_and_owners_renew_theirs(pair, redis_server) -> None:
    a, _b = pair
    a.live_calls = lambda: {"CAlive": "media"}
    assert await a.reserve("CAlive", LEASE_S, None)
    await a.own("CAlive", "media")
    assert await a.reserve("CAcrashed", LEASE_S, None)  # nobody renews this one
    # the unrenewed lease lapses (on Redis's clock); the owned one is renewed by heartbeats
    await wait_for(
        lambda: (
            set(redis_server.command("ZRANGE", "tel:fleet", 0, -1)) == {"CAlive"}
            and a.fleet_active == 1
        ),  # as A counted it at its own latest heartbeat
        LEASE_S + 5,
        "only CAlive holds a lease",
    )
    assert await a.owner_of("CAlive") == "A"


async def test_control_message_reaches_the_owner_and_the_reply_comes_back(pair) -> None:
    a, b = pair
    seen: list[dict[str, Any]] = []

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"ok": True, "by": "B"}

    b.on_control = handle
    reply = await a.request("B", {"op": "hangup", "call": "CA1"}, timeout_s=2)
    assert reply == {"ok": True, "by": "B"}
    assert seen[0]["op"] == "hangup" and seen[0]["reply_to"] == "A"
    t0 = time.monotonic()
    assert await a.request("nobody", {"op": "hangup", "call": "CA1"}, timeout_s=2) is None
    # nobody subscribed: no wait for the 2 s timeout
    within("fleet.request_nobody_s", time.monotonic() - t0, 1.0)


async def test_redis_down_is_quick_to_say_so_and_a_restart_heals(pair, redis_server) -> None:
    a, b = pair
    a.live_calls = lambda: {"CAkept": "media"}
    await a.heartbeat()
    assert a.up
    redis_server.kill()
    t0 = time.monotonic()
    with pytest.raises(FleetUnavailable):
        await a.claim("nonce:z", time.time() + 5)
    # a webhook never waits long on a dead Redis (0.25 s socket timeouts, two retries)
    within("fleet.dead_redis_s", time.monotonic() - t0, 1.5)
    await wait_for(lambda: not b.up, 3)  # the heartbeat notices too
    redis_server.start()  # same port, empty keyspace

    def healed() -> bool:  # each instance re-asserts its own state at its next heartbeat
        return (
            redis_server.command("ZCARD", "tel:fleet") == 1
            and redis_server.command("HGET", "tel:call:CAkept", "owner") == "A"
            and set(redis_server.command("ZRANGE", "tel:ready", 0, -1)) == {"A", "B"}
        )

    await wait_for(healed, 3)

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    b.on_control = handle  # B's control channel is subscribed again (probed, not assumed)
    for _ in range(50):
        if await a.request("B", {"op": "ping-test"}, timeout_s=0.5):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("B's control channel never came back")


async def test_start_up_with_redis_down_joins_when_it_comes_up(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # not started
    state = redis_state(redis.url, "late")
    await state.start()  # does not raise: runs degraded
    try:
        assert not state.up
        redis.start()
        await wait_for(lambda: state.up, 3)
        await wait_for(lambda: redis.command("ZRANGE", "tel:ready", 0, -1) == ["late"], 3)
    finally:
        await state.stop()
        redis.kill()


async def test_draining_leaves_the_ready_set_and_stop_leaves_the_fleet(pair, redis_server) -> None:
    a, _b = pair
    await a.set_draining(True)
    assert set(redis_server.command("ZRANGE", "tel:ready", 0, -1)) == {"B"}
    assert redis_server.command("HGET", "tel:inst:A", "state") == "draining"
    await a.stop()
    assert redis_server.command("EXISTS", "tel:inst:A") == 0


async def test_the_acl_user_the_docs_give_is_enough(redis_server) -> None:
    """docs/fleet.md's ACL rule for the service's Redis user: every step of the fleet state
    works under it (a missing category fails a step: TIME inside the Lua scripts did)."""
    docs = (Path(__file__).parents[2] / "docs" / "fleet.md").read_text()
    rule = next(line for line in docs.splitlines() if "ACL SETUSER" in line and ">PASSWORD" in line)
    words = rule.split()[3:]  # after ACL SETUSER telephony
    words = [">pw-of-the-service" if w == ">PASSWORD" else w for w in words]
    assert redis_server.command("ACL", "SETUSER", "telephony", *words) == "OK"
    url = redis_server.url.replace("redis://", "redis://telephony:pw-of-the-service@")
    a, b = redis_state(url, "A"), redis_state(url, "B")
    await a.start()
    await b.start()
    try:
        assert a.up and b.up

        async def handle(message: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

        b.on_control = handle
        expires = time.time() + 30
        assert await a.claim("nonce", expires) and not await b.claim("nonce", expires)
        assert await a.remember("answer", "tok", 30) is None
        assert await a.reserve("CA1", 30, 2) and await a.own("CA1", "media")
        assert await b.owner_of("CA1") == "A"
        assert await a.request("B", {"op": "live"}, timeout_s=2) == {"ok": True}
        await a.heartbeat()
        await a.set_draining(True)
        await a.release("CA1")
        assert sorted(await a.instances()) == ["A", "B"]
    finally:
        await a.stop()
        await b.stop()
