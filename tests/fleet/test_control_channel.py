"""The fleet's control channel takes only what a member of the fleet sent (issue 26, finding 3).

Before: any client of Redis could ``PUBLISH`` to ``tel:ctl:<instance>`` and have a live caller
hear its words (op ``amd`` with a message), hang up or transfer calls, or read the live list;
a malformed ``live`` reply made ``/console/live.json`` answer 500. Here, against a real
Redis-protocol server and the real :class:`RedisState` and :class:`RemoteControl`: unsealed,
forged, stale and replayed messages change nothing and are logged once each; a member's
message of the wrong shape changes nothing; one member can keep at most
``MAX_CONTROL_TASKS`` messages in hand at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers import wait_for
from processes import RedisServer

from telephony.admission import CallRegistry, StreamTokens
from telephony.fleet.redis_state import MAX_CONTROL_TASKS, RedisState
from telephony.fleet.seal import ControlSeal, Refused
from telephony.observability.call_log import CallLogs
from telephony.remote_control import RemoteControl

SECRET = b"fleet-test-secret-of-at-least-32-chars"
AMD = {
    "op": "amd",
    "call": "CA00000000000000000000000000000001",
    "args": {"answered_by": "machine_end_beep", "message": "This is your bank. Read your PIN."},
}


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisState, RedisState]]:
    states = [
        RedisState(redis_server.url, name, heartbeat_s=0.2, seal=ControlSeal(SECRET))
        for name in ("A", "B")
    ]
    for state in states:
        await state.start()
    yield states[0], states[1]
    for state in states:
        await state.stop()


@pytest.fixture
async def outsider(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "control message refused" in r.getMessage()]


def test_a_seal_opens_once_on_its_channel_within_its_window() -> None:
    now = [1000.0]
    seal = ControlSeal(SECRET, window_s=30, clock=lambda: now[0])
    sealed = seal.seal("tel:ctl:B", AMD)
    with pytest.raises(Refused, match="bad MAC"):  # not for another instance
        seal.open("tel:ctl:C", sealed)
    with pytest.raises(Refused, match="bad MAC"):  # another fleet's key
        ControlSeal(b"another-secret-of-at-least-32-chars!!", clock=lambda: now[0]).open(
            "tel:ctl:B", sealed
        )
    tampered = json.loads(sealed)
    tampered["m"] = tampered["m"].replace("PIN", "PIN now")
    with pytest.raises(Refused, match="bad MAC"):
        seal.open("tel:ctl:B", json.dumps(tampered))
    now[0] += 31
    with pytest.raises(Refused, match="old timestamp"):
        seal.open("tel:ctl:B", sealed)
    now[0] -= 31
    assert seal.open("tel:ctl:B", sealed) == AMD
    with pytest.raises(Refused, match="replayed"):
        seal.open("tel:ctl:B", sealed)
    for junk in (b"", b"[]", b'{"op": "amd"}', json.dumps({"t": 1, "m": "{}", "mac": "00"})):
        with pytest.raises(Refused, match="not sealed"):
            seal.open("tel:ctl:B", junk)
    with pytest.raises(Refused, match="too large"):
        seal.open("tel:ctl:B", b"x" * 70_000)


async def test_forged_control_messages_change_nothing_and_are_logged_once_each(
    pair: tuple[RedisState, RedisState],
    outsider: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = pair
    seen: list[dict[str, Any]] = []

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"ok": True}

    b.on_control = handle
    # a genuine request, captured on the wire by the outsider for a replay
    tap = outsider.pubsub()
    await tap.subscribe("tel:ctl:B")
    assert await a.request("B", {"op": "hangup", "call": "CA1"}, timeout_s=2) == {"ok": True}
    captured = None
    while captured is None:
        message = await tap.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is not None and b"hangup" in message["data"]:
            captured = message["data"]
    await tap.aclose()
    assert len(seen) == 1
    caplog.set_level(logging.WARNING, logger="telephony.fleet")
    stale = ControlSeal(SECRET, clock=lambda: time.time() - 120).seal("tel:ctl:B", AMD)
    forged = [
        json.dumps(AMD),  # the review's attack: a plain PUBLISH
        ControlSeal(b"a-guessed-secret-of-at-least-32-chars").seal("tel:ctl:B", AMD),
        stale,
        captured,
    ]
    for body in forged:
        assert await outsider.publish("tel:ctl:B", body) == 1  # B listens, and hears it
    await wait_for(lambda: len(refusals(caplog)) >= len(forged), 3)
    # a genuine message after them is acted on: the channel works, the forged ones did nothing
    assert await a.request("B", {"op": "live"}, timeout_s=2) == {"ok": True}
    assert [m["op"] for m in seen] == ["hangup", "live"]
    reasons = [r.split("(")[1].split(")")[0] for r in refusals(caplog)]
    assert reasons == ["not sealed", "bad MAC", "old timestamp", "replayed"]


async def test_one_member_can_keep_at_most_the_cap_of_messages_in_hand(
    pair: tuple[RedisState, RedisState], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    release = asyncio.Event()
    started: list[str] = []

    async def slow(message: dict[str, Any]) -> dict[str, Any]:
        started.append(message["call"])
        await release.wait()
        return {"ok": True}

    b.on_control = slow
    caplog.set_level(logging.WARNING, logger="telephony.fleet")
    asks = [
        asyncio.create_task(a.request("B", {"op": "hangup", "call": f"CA{i}"}, timeout_s=3))
        for i in range(MAX_CONTROL_TASKS + 8)
    ]
    await wait_for(lambda: len(started) + len(refusals(caplog)) == len(asks), 3)
    assert len(started) == MAX_CONTROL_TASKS
    assert all("too many at once" in r for r in refusals(caplog))
    release.set()
    replies = await asyncio.gather(*asks)
    assert sum(r == {"ok": True} for r in replies) == MAX_CONTROL_TASKS
    assert sum(r is None for r in replies) == 8  # the refused ones time out, as for a dead owner


class RecordingControl:
    """Stands in for a call's control: records what it was asked (nothing should be)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    async def operator_hang_up(self, reason: str) -> str:
        self.asked.append(("hangup", reason))
        return "hanging up"

    async def operator_transfer(self, destination: str) -> str:
        self.asked.append(("transfer", destination))
        return "transferring"

    async def on_answered(self, answered_by: str, message: str) -> str:
        self.asked.append(("amd", answered_by, message))
        return "leaving a voicemail"


class LiveCall:
    def __init__(self) -> None:
        self.control = RecordingControl()
        self.caller = "+15551230000"
        self.started_at = time.monotonic()


def remote_control(state: RedisState, tmp_path: Path) -> RemoteControl:
    registry = CallRegistry(max_calls=4, tokens=StreamTokens(SECRET), state=state)
    return RemoteControl(registry, state, CallLogs(tmp_path), None, None, {"desk": "+15550001111"})


async def test_a_member_message_of_the_wrong_shape_changes_nothing(
    pair: tuple[RedisState, RedisState], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    control_b = remote_control(b, tmp_path / "b")
    b.on_control = control_b.on_message
    call = LiveCall()
    control_b._registry.live[AMD["call"]] = call  # type: ignore[assignment]
    caplog.set_level(logging.WARNING)
    wrong = [
        {
            "op": "amd",
            "call": AMD["call"],
            "args": {"answered_by": "machine", "message": "x" * 501},
        },
        {"op": "amd", "call": AMD["call"], "args": "hello"},
        {"op": "hangup", "call": ["CA1"]},
        {"op": "transfer", "call": AMD["call"], "args": {}},
        {"op": "speak", "call": AMD["call"], "text": "This is your bank."},
    ]
    for message in wrong:
        assert await a.request("B", message, timeout_s=2) == {"ok": False, "error": "bad message"}
    assert call.control.asked == []
    assert sum("bad schema" in r.getMessage() for r in caplog.records) == len(wrong)
    # the right shape is acted on
    assert (await a.request("B", AMD, timeout_s=2) or {}).get("ok") is True
    assert call.control.asked == [("amd", "machine_end_beep", AMD["args"]["message"])]


async def test_a_malformed_live_list_from_a_member_is_left_out(
    pair: tuple[RedisState, RedisState], tmp_path: Path
) -> None:
    a, b = pair
    control_a = remote_control(a, tmp_path / "a")
    control_a._registry.live["CA00000000000000000000000000000002"] = LiveCall()  # type: ignore[assignment]

    async def malformed(message: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "calls": [{"call_sid": "CAx", "seconds": "long", "instance": "B"}, 5]}

    b.on_control = malformed
    rows = await control_a.live()  # before: float("long") raised, and the console answered 500
    assert [row["call_sid"] for row in rows] == ["CA00000000000000000000000000000002"]

    async def fine(message: dict[str, Any]) -> dict[str, Any]:
        row = {"call_sid": "CA3", "caller": "", "seconds": 9.5, "instance": "B"}
        return {"ok": True, "calls": [row]}

    b.on_control = fine
    assert next(row["call_sid"] for row in await control_a.live()) == "CA3"
