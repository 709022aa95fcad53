"""Fleet mode with real ``server.py`` processes sharing a real Redis: a call answered by one
instance and streamed on another, single-use tokens and SIP deliveries fleet-wide, fleet
capacity and leases, call control from any instance, draining, and Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    events,
    fixture_audio,
    run_server,
    start_message,
    wait_for,
    within,
)
from processes import Fleet, RedisServer, http_status
from websockets.asyncio.client import ClientConnection, connect

from telephony.observability.call_log import read_call_log
from telephony.simulate import Answer, Say, answer_call, simulate_call
from telephony.testing import (
    LoopbackRealtimeServer,
    OpenAIApiStandIn,
    TwilioApiStandIn,
    signed_webhook,
    tone,
)

SECRET = "fleet-stream-token-secret-0123456789"
DIAL_TOKEN = "fleet-dial-token-0123456789"
SIP_SECRET = "whsec_c2lwLWZsZWV0LXNlY3JldC0wMTIzNDU2Nzg5"
LEASE_S = 3.0
SILENCE = b"\xff"


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
    loopback = {"reply": lambda _: tone(600, 1500), **(model_args or {})}
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


async def test_webhook_on_one_instance_stream_on_another_and_no_replay(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as ctx:
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
        await wait_for(ctx.model.connections[0].closed.is_set, what="A's pre-warm closed")
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


async def test_one_sip_delivery_to_two_instances_is_accepted_once(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as ctx:
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
        accepts = [r for r in ctx.openai.requests if r[0] == "accept"]
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


async def test_hang_up_on_any_instance_reaches_the_owner_or_falls_back(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as ctx:
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


async def test_sigterm_on_one_instance_while_the_others_take_calls(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, DRAIN_TIMEOUT="3", DRAIN_LB_GRACE="1") as ctx:
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


async def test_the_console_lists_the_calls_of_every_instance(tmp_path: Path) -> None:
    """The console's live list on one instance shows a call another instance runs (asked over
    the control channel), masked; an instance that does not answer is left out in time."""
    token = "console-token-0123456789abcdef"
    async with running_fleet(tmp_path, ("A", "B"), CONSOLE_TOKEN=token) as ctx:

        def live(name: str) -> list[dict[str, Any]]:
            request = urllib.request.Request(
                ctx.fleet[name].base_url + "/console/live.json",
                headers={"Authorization": f"Bearer {token}"},
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


async def test_warm_transfer_whose_person_leg_reaches_another_instance(tmp_path: Path) -> None:
    """The caller's call runs on A; the person's leg (its webhook and stream) on B. B's
    decision reaches A over the control channel, and A joins both calls in the conference."""
    target, caller_number = "+15550003333", "+15550009999"
    env = {"TRANSFER_TARGETS": f"sales={target}", "TRANSFER_WARM": "sales"}
    model = {"reply": lambda _: tone(600, 300), "tool_call_in": _warm_agents}
    async with running_fleet(
        tmp_path, ("A", "B"), model_args=model, TWILIO_FROM_NUMBER=caller_number, **env
    ) as ctx:
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
        await wait_for(lambda: ctx.twilio.created, 20, "the person's call placed")
        person_sid = ctx.twilio.created[0]
        create = next(r for r in ctx.twilio.requests if r.path.endswith("/Calls.json"))
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
