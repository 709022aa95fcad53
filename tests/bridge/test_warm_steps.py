"""A warm transfer's steps when the caller leaves at the worst moments, or the join fails: the
person's call is never left ringing, on hold, or alone in the conference. The carrier here
records what it was asked and can be made slow or failing at one step (the real Twilio steps
are exercised end to end in ``test_warm_transfer.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from telephony.agent.briefing import Briefing
from telephony.control.warm import WarmTransfer

LEG = "CA" + "2" * 32


class Steps:
    """A carrier whose ``dial`` or ``join`` waits for ``release`` (or fails)."""

    def __init__(self, slow: str = "", fail: str = "") -> None:
        self.slow, self.fail = slow, fail
        self.done: list[str] = []
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    async def _step(self, name: str) -> None:
        if self.slow == name:
            self.waiting.set()
            await self.release.wait()
        if self.fail == name:
            raise RuntimeError(f"{name} failed")

    async def dial(self, briefing: Briefing, target: str) -> str:
        await self._step("dial")
        self.done.append("dial")
        return LEG

    async def hold(self, on: bool) -> None:
        self.done.append(f"hold {on}")

    async def join(self, leg: str, leaving: Any) -> str:
        await self._step("join")
        self.done.append("join")
        return "conference"

    async def end_leg(self, leg: str) -> str:
        self.done.append(f"end {leg}")
        return "twilio_rest"


def transfer(steps: Steps, records: list[dict[str, Any]]) -> WarmTransfer:
    briefing = Briefing(key="k" * 24, caller_sid="CA" + "1" * 32, destination="sales", summary="x")
    record = lambda event, **fields: records.append({"event": event, **fields})  # noqa: E731
    return WarmTransfer(briefing, "+15550003333", steps, record, decide_timeout=5)


async def test_a_caller_who_leaves_while_the_person_is_dialled_has_that_call_ended() -> None:
    steps, records = Steps(slow="dial"), []
    warm = transfer(steps, records)
    task = asyncio.create_task(warm.run())
    await steps.waiting.wait()
    task.cancel()
    await asyncio.sleep(0)
    steps.release.set()  # Twilio places the call after all
    await asyncio.gather(task, return_exceptions=True)
    assert steps.done == ["hold True", "dial", f"end {LEG}"]
    assert warm.outcome == "cancelled"
    assert [r["event"] for r in records][-2:] == ["transfer.cancelled", "transfer.leg_ended"]


async def test_a_failed_join_ends_the_persons_call_and_gives_the_caller_back() -> None:
    steps, records = Steps(fail="join"), []
    warm = transfer(steps, records)
    task = asyncio.create_task(warm.run())
    await asyncio.sleep(0.01)
    assert warm.decide("accepted", "voice", LEG)
    assert await task == "failed"
    assert steps.done == ["hold True", "dial", f"end {LEG}", "hold False"]
    declined = [r for r in records if r["event"] == "transfer.declined"]
    assert declined[0]["outcome"] == "failed" and declined[0]["why"] == "join"


async def test_a_caller_who_leaves_during_the_join_has_the_persons_call_ended() -> None:
    steps, records = Steps(slow="join"), []
    warm = transfer(steps, records)
    task = asyncio.create_task(warm.run())
    await asyncio.sleep(0.01)
    warm.decide("accepted", "voice", LEG)
    await steps.waiting.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert steps.done == ["hold True", "dial", f"end {LEG}"]
    assert warm.outcome == "cancelled"


async def test_only_the_first_decision_counts_and_only_from_the_persons_leg() -> None:
    steps, records = Steps(), []
    warm = transfer(steps, records)
    task = asyncio.create_task(warm.run())
    await asyncio.sleep(0.01)
    assert not warm.decide("accepted", "voice", "CA" + "9" * 32)  # another call's
    assert not warm.decide("maybe")  # not an outcome
    assert warm.decide("busy", "call status busy", LEG)
    assert not warm.decide("accepted", "voice", LEG)
    assert await task == "busy"
    assert steps.done == ["hold True", "dial", "hold False"]  # a busy line has nothing to end
