"""Fleet behaviour on one fleet shared by the module: three real ``server.py`` instances on a
real Redis, started once (a start is about 5 CPU-s, almost all imports, and the machine starts
one server at a time). A call answered by one instance and streamed on another, single-use
tokens and SIP deliveries fleet-wide, call control and the console from any instance, SIGTERM
drain while the others take calls, a warm transfer across instances.

Each test finds the fleet whole and quiet and leaves it so: after it, an instance it stopped
is started again, the loopback model is put back as it was, and the test waits until every
call it made has ended fleet-wide (no fleet slot held), so no test sees another's calls and
the order they run in does not matter. The tests that need settings of their own (a fleet
cap, a URL per instance) or break what an instance restart does not mend (Redis going away)
start their own fleet, in ``test_fleet.py``. The fleet is session-scoped (one per xdist
worker) and ``tests/conftest.py`` has xdist send this module's tests to one worker, so it
starts once a run."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fleet_support import (
    AUTH_TOKEN,
    SILENCE,
    SIP_SECRET,
    Ctx,
    default_reply,
    end_stream,
    hold_stream,
    running_fleet,
    wait_for_attach,
)
from helpers import events, fixture_audio, wait_for, within
from processes import http_status

from telephony.simulate import Say, answer_call, simulate_call
from telephony.testing import signed_webhook, tone

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONSOLE_TOKEN = "console-token-0123456789abcdef"
WARM_TARGET, CALLER_NUMBER = "+15550003333", "+15550009999"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    async with running_fleet(
        tmp_path_factory.mktemp("shared-fleet"),
        CONSOLE_TOKEN=CONSOLE_TOKEN,
        TRANSFER_TARGETS=f"sales={WARM_TARGET}",
        TRANSFER_WARM="sales",
        TWILIO_FROM_NUMBER=CALLER_NUMBER,
        DRAIN_TIMEOUT="3",
        DRAIN_LB_GRACE="1",
    ) as shared:
        yield shared


@pytest_asyncio.fixture(loop_scope="session")
async def ctx(fleet: Ctx) -> AsyncIterator[Ctx]:
    """The shared fleet, whole and quiet before the test and made so again after it: an
    instance the test stopped (SIGTERM) is started again, every call has ended."""
    await wait_for(lambda: fleet.fleet_slots() == 0, 20, "no call left from an earlier test")
    try:
        yield fleet
    finally:
        fleet.model.reply, fleet.model.tool_call_in = default_reply, None
        for server in fleet.fleet.servers.values():
            if server.process is not None and server.process.poll() is not None:
                await server.up()
        await wait_for(lambda: fleet.fleet_slots() == 0, 20, "every call of the test ended")


async def test_webhook_on_one_instance_stream_on_another_and_no_replay(ctx: Ctx) -> None:
    earlier = len(ctx.model.connections)  # sessions of the module's earlier tests
    answer = await ctx.answer("A")
    result = await simulate_call(
        "",
        fixture_audio("goforward.ulaw"),
        answer=answer.via(ctx.fleet["B"].base_url),
        auth_token=AUTH_TOKEN,
        speed=4,
        min_turns=1,
    )
    assert result.turns and result.turns[0].frames > 50  # the agent answered, through B
    log_b = await ctx.ended("B", answer.call_sid)
    assert {r["instance"] for r in log_b} == {"B"}
    assert events(log_b, "stream.start") and log_b[-1]["reason"] == "caller_hangup"
    assert ctx.log("A", answer.call_sid)[0]["event"] == "webhook"  # A answered it
    # A opened the call's model session at the webhook; the stream on B connected its
    # own and had A's closed at once over the control channel (not by A's 15 s timer)
    prewarmed = ctx.model.connections[earlier]  # A's, opened at the webhook
    await wait_for(prewarmed.closed.is_set, what="A's pre-warm closed")
    prewarm = events(ctx.log("A", answer.call_sid), "prewarm")
    assert [r["outcome"] for r in prewarm] == ["opened", "discarded"], prewarm
    assert prewarm[1]["reason"] == "stream on another instance"
    assert prewarm[1]["waited_s"] < 15
    assert not events(log_b, "prewarm")
    connections = len(ctx.model.connections)
    replay = await hold_stream(answer.via(ctx.fleet["C"].base_url))
    await asyncio.wait_for(replay.wait_closed(), 5)
    assert replay.close_code == 1008
    assert len(ctx.model.connections) == connections  # no model session for the replay
    assert "stream refused: stream token already used" in ctx.fleet["C"].output


async def test_one_sip_delivery_to_two_instances_is_accepted_once(ctx: Ctx) -> None:
    body, headers = signed_webhook(SIP_SECRET, "rtc_fleet1", {"From": "<sip:+1555@x>"})

    def deliver(name: str) -> Any:
        request = urllib.request.Request(
            ctx.fleet[name].base_url + "/openai/webhook", data=body, headers=headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["status"]

    first = await asyncio.gather(*(asyncio.to_thread(deliver, n) for n in ("A", "B")))
    await asyncio.sleep(1)
    later = await asyncio.to_thread(deliver, "C")
    assert sorted([*first, later]) == ["accepted", "duplicate", "duplicate"]
    accepts = [r for r in ctx.openai.requests if r[:2] == ("accept", "rtc_fleet1")]
    assert len(accepts) == 1
    # call control for the SIP call from the instance that did not accept it
    owner = "A" if first[0] == "accepted" else "B"
    await wait_for_attach(ctx, owner, "rtc_fleet1")
    status, body = await ctx.post("C", "/calls/rtc_fleet1/hangup")
    assert (status, body["via"], body["instance"]) == (200, "owner", owner)
    log = await ctx.ended(owner, "rtc_fleet1")
    assert events(log, "hangup.requested")[0]["by"] == "operator"
    assert events(log, "call.hangup")[0]["via"] == "openai_calls_api"
    # no owner any more (the call ended), but one the fleet accepted: the Calls API directly
    status, body = await ctx.post("C", "/calls/rtc_fleet1/hangup")
    assert (status, body["via"]) == (200, "openai_calls_api")
    assert ("hangup", "rtc_fleet1") in [(r[0], r[1]) for r in ctx.openai.requests]
    # a call_id the fleet never accepted is not ours: 404, and OpenAI is not asked
    status, body = await ctx.post("C", "/calls/rtc_nobody/hangup")
    assert status == 404
    assert ("hangup", "rtc_nobody") not in [(r[0], r[1]) for r in ctx.openai.requests]


async def test_hang_up_on_any_instance_reaches_the_owner_or_falls_back(ctx: Ctx) -> None:
    answer = await ctx.answer("A")
    call = asyncio.create_task(
        simulate_call(
            "",
            SILENCE * 8000 * 15,
            answer=answer.via(ctx.fleet["B"].base_url),
            auth_token=AUTH_TOKEN,
        )
    )
    await asyncio.sleep(1.0)
    status, body = await ctx.post("A", f"/calls/{answer.call_sid}/hangup")
    assert (status, body["via"], body["instance"]) == (200, "owner", "B")
    result = await asyncio.wait_for(call, 10)
    log = await ctx.ended("B", answer.call_sid)
    kinds = [r["event"] for r in log]
    assert kinds.index("hangup.requested") < kinds.index("response.started")
    assert kinds.index("response.done") < kinds.index("call.hangup")
    assert events(log, "call.hangup")[0]["via"] == "twilio_rest"
    assert log[-1]["reason"] == "operator_hangup" and result.closed_by_server
    assert result.turns and result.turns[-1].frames > 50  # the caller heard the goodbye
    hangups = [r for r in ctx.twilio.requests if answer.call_sid in r.path]
    assert hangups[-1].form["Status"] == "completed"

    # the owner is silent (stopped): A waits CONTROL_TIMEOUT, then uses Twilio's REST API
    silent = await ctx.answer("A")
    ws = await hold_stream(silent.via(ctx.fleet["B"].base_url))
    await asyncio.sleep(0.5)
    ctx.fleet["B"].signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        status, body = await ctx.post("A", f"/calls/{silent.call_sid}/hangup")
        assert (status, body["via"]) == (200, "twilio_rest")
        # CONTROL_TIMEOUT (1 s here), then the REST call
        within("fleet.silent_owner_fallback_s", time.monotonic() - t0, 3.0)
    finally:
        ctx.fleet["B"].signal(signal.SIGCONT)
    assert any(
        silent.call_sid in r.path and r.form.get("Status") == "completed"
        for r in ctx.twilio.requests
    )
    await end_stream(ws)
    ctx.twilio.gone.add("CA" + "9" * 32)
    status, _ = await ctx.post("C", f"/calls/{'CA' + '9' * 32}/hangup")
    assert status == 404


async def test_sigterm_on_one_instance_while_the_others_take_calls(ctx: Ctx) -> None:
    caller = fixture_audio("numbers.ulaw") * 2
    base = {name: ctx.fleet[name].base_url for name in ("A", "B", "C")}

    async def call_on(webhook: str, stream: str) -> tuple[str, str]:
        answer = await ctx.answer(webhook)
        await simulate_call(
            "", caller, answer=answer.via(base[stream]), auth_token=AUTH_TOKEN, speed=2
        )
        return stream, answer.call_sid

    calls = [asyncio.create_task(call_on("A", "A")) for _ in range(2)]
    await asyncio.sleep(1.0)
    ctx.fleet["A"].signal(signal.SIGTERM)

    async def a_draining() -> bool:
        return await asyncio.to_thread(http_status, base["A"] + "/readyz") == 503

    await wait_for(a_draining, 10, "A's /readyz 503 after SIGTERM")
    # a stream the balancer had already routed to A is still taken (DRAIN_LB_GRACE)
    calls += [asyncio.create_task(call_on("A", "A"))]
    # the balancer sends new calls to B and C; a webhook that still lands on A gets a token
    calls += [asyncio.create_task(call_on("A", "B"))]
    calls += [asyncio.create_task(call_on(n, n)) for n in ("B", "C", "B", "C")]
    finished = await asyncio.wait_for(asyncio.gather(*calls), 40)
    assert await ctx.fleet["A"].wait(20) == 0
    for name, call_sid in finished:
        log = await ctx.ended(name, call_sid)
        assert [r["event"] for r in log].count("call.end") == 1
        assert events(log, "stream.start")  # every call was taken: nothing refused or lost
    reasons = [ctx.log(n, sid)[-1]["reason"] for n, sid in finished]
    assert set(reasons[:3]) <= {"server_shutdown", "caller_hangup"}  # A's own calls
    assert reasons[3:] == ["caller_hangup"] * 5  # every call on B and C completed
    assert ctx.fleet.redis.command("EXISTS", "tel:inst:A") == 0


async def test_the_console_lists_the_calls_of_every_instance(ctx: Ctx) -> None:
    """The console's live list on one instance shows a call another instance runs (asked over
    the control channel), masked; an instance that does not answer is left out in time."""

    def live(name: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            ctx.fleet[name].base_url + "/console/live.json",
            headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    answer = await ctx.answer("A")
    ws = await hold_stream(answer.via(ctx.fleet["B"].base_url))
    try:
        await wait_for_attach(ctx, "B", answer.call_sid)
        rows = await asyncio.to_thread(live, "A")
        assert [(r["call_sid"], r["instance"]) for r in rows] == [(answer.call_sid, "B")]
        assert rows[0]["caller"].startswith("+1•") and rows[0]["seconds"] >= 0
        on_b = await asyncio.to_thread(live, "B")  # the owner lists it the same way
        assert [{**r, "seconds": 0} for r in on_b] == [{**rows[0], "seconds": 0}]

        ctx.fleet["B"].signal(signal.SIGSTOP)  # B cannot answer: A lists what it knows
        try:
            t0 = time.monotonic()
            assert await asyncio.to_thread(live, "A") == []
            within("fleet.console_silent_member_s", time.monotonic() - t0, 2.5)  # 1 s timeout
        finally:
            ctx.fleet["B"].signal(signal.SIGCONT)
    finally:
        await end_stream(ws)


def _warm_agents(instructions: str, turn: int) -> tuple[str, dict[str, Any]] | None:
    """The caller's agent transfers at its first reply; the briefing agent accepts when the
    person first speaks."""
    if "is on hold" in instructions:
        return ("accept_transfer", {}) if turn == 1 else None
    summary = "Dana wants to move her delivery to Friday"
    return ("transfer_call", {"destination": "sales", "summary": summary}) if turn == 0 else None


async def test_warm_transfer_whose_person_leg_reaches_another_instance(ctx: Ctx) -> None:
    """The caller's call runs on A; the person's leg (its webhook and stream) on B. B's
    decision reaches A over the control channel, and A joins both calls in the conference."""
    ctx.model.reply, ctx.model.tool_call_in = (lambda _: tone(600, 300)), _warm_agents
    placed, requested = len(ctx.twilio.created), len(ctx.twilio.requests)
    caller = await ctx.answer("A")
    caller_leg = asyncio.create_task(
        simulate_call(
            "",
            fixture_audio("goforward.ulaw"),
            answer=caller.via(ctx.fleet["A"].base_url),
            auth_token=AUTH_TOKEN,
            ended=ctx.twilio.leaves(caller.call_sid),
            max_tail_s=40,
        )
    )
    await wait_for(lambda: len(ctx.twilio.created) > placed, 20, "the person's call placed")
    person_sid = ctx.twilio.created[placed]
    calls = ctx.twilio.requests[requested:]
    create = next(r for r in calls if r.path.endswith("/Calls.json"))
    person = await answer_call(
        ctx.fleet["B"].base_url,
        auth_token=AUTH_TOKEN,
        public_url=ctx.fleet.public_url,
        call_sid=person_sid,
        webhook=create.form["Url"].removeprefix(ctx.fleet.public_url),
        direction="outbound-api",
    )
    person_said = [Say(fixture_audio("okay.ulaw"), quiet_s=0.3)]
    await simulate_call(
        "",
        b"",
        answer=person.via(ctx.fleet["B"].base_url),
        auth_token=AUTH_TOKEN,
        script=person_said,
        ended=ctx.twilio.leaves(person_sid),
        max_tail_s=30,
    )
    await asyncio.wait_for(caller_leg, 20)
    caller_log = await ctx.ended("A", caller.call_sid)
    person_log = await ctx.ended("B", person_sid)
    asked_on_b = ctx.log("B", caller.call_sid)  # B asked the owner, in the caller's name
    room = f"warm-{caller.call_sid}"
    for sid in (caller.call_sid, person_sid):
        assert any(room in u.get("Twiml", "") for u in ctx.twilio.updates(sid)), sid
    assert events(person_log, "transfer.briefing") and events(person_log, "transfer.accepted")
    assert events(caller_log, "transfer.accepted")[0]["person_leg"] == person_sid
    warm = [r for r in events(asked_on_b, "control.request") if r["op"] == "warm"]
    assert warm and warm[0]["via"] == "owner" and warm[0]["owner"] == "A"
    assert caller_log[-1]["reason"] == person_log[-1]["reason"] == "transferred"
