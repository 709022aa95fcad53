"""Warm transfer on the Media Streams path, with both legs played by the simulated Twilio in
real time against one live server: the caller's leg, and the person's leg the service dials
through the Twilio REST stand-in (whose webhook and stream the test answers as Twilio would).
The loopback model plays both agents: the caller's asks for the transfer, the briefing agent
(told apart by its instructions) accepts or declines when the person speaks.

A decision reaches the caller's owner; the stand-in records how both calls were moved (into
the conference) or ended, and each simulated leg leaves its stream when its call is updated,
as Twilio ends a stream then."""

from __future__ import annotations

import asyncio
import base64
import secrets
import urllib.parse
import urllib.request
from typing import Any

import httpx
from helpers import (
    AUTH_TOKEN,
    SILENCE,
    events,
    final_log,
    fixture_audio,
    metric_samples,
    run_server,
    twilio_api,
    wait_for,
)
from twilio.request_validator import RequestValidator

from telephony.observability.call_log import read_call_log
from telephony.simulate import Say
from telephony.testing import OpenAIApiStandIn, signed_webhook, tone

TARGET = "+15550003333"
FROM = "+15550009999"
SUMMARY = "Dana wants to move her delivery of order 4411 to Friday"
CALLER_AUDIO = fixture_audio("goforward.ulaw")
PERSON_SAYS = [Say(fixture_audio("okay.ulaw"), quiet_s=0.3)]
ACCEPT = ("accept_transfer", {})
DECLINE = ("decline_transfer", {"reason": "in a meeting until three"})


def agents(person: tuple[str, dict[str, Any]] | None) -> Any:
    """The loopback's tool calls: the caller's agent transfers at its first reply; the
    briefing agent (its instructions say a caller is on hold) does ``person`` at its second
    (the first is the briefing itself)."""

    def tool_call_in(instructions: str, turn: int) -> tuple[str, dict[str, Any]] | None:
        if "is on hold" in instructions:
            return person if turn == 1 else None
        return (
            ("transfer_call", {"destination": "sales", "summary": SUMMARY}) if turn == 0 else None
        )

    return tool_call_in


def warm_settings(api: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        **api,
        "transfer_targets": f"sales={TARGET}",
        "transfer_warm": "sales",
        "twilio_from_number": FROM,
        "transfer_offer": "to take a message",
        **more,
    }


async def dialled(srv: Any, stand_in: Any) -> tuple[str, dict[str, str]]:
    """The person's CallSid and the create request's form, once the service dialled."""
    await wait_for(lambda: stand_in.created, 20, "the person's call placed")
    create = next(r for r in stand_in.requests if r.path.endswith("/Calls.json"))
    return stand_in.created[0], create.form


async def answer_person(srv: Any, stand_in: Any, **call: Any) -> Any:
    """Twilio's side of the person's leg: the webhook the create request named, then its
    stream in real time until the call is moved or ended."""
    person_sid, form = await dialled(srv, stand_in)
    webhook = form["Url"].removeprefix(srv.settings.public_url)
    answer = await srv.answer(
        call_sid=person_sid,
        webhook=webhook,
        direction="outbound-api",
        from_number=FROM,
        to_number=TARGET,
    )
    return await srv.call(b"", answer=answer, ended=stand_in.leaves(person_sid), **call)


def post_signed(srv: Any, url: str, params: dict[str, str]) -> int:
    """A Twilio callback to ``url`` (one the service gave Twilio), signed as Twilio signs."""
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    request.add_header("X-Twilio-Signature", signature)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def callback(srv: Any, form: dict[str, str], which: str, person_sid: str, **fields: str) -> int:
    params = {"CallSid": person_sid, "AccountSid": "AC" + "0" * 32, **fields}
    return post_signed(srv, form[which], params)


def briefs(connection: Any) -> bool:
    """Whether a loopback connection is a briefing agent's (its instructions say so)."""
    return any(
        "is on hold" in str((e.get("session") or {}).get("instructions")) for e in connection.events
    )


def person_connection(srv: Any) -> Any:
    return next(c for c in srv.model.connections if briefs(c))


def notes(srv: Any) -> list[str]:
    """What the caller's agent was asked to say (its ``response.create`` instructions), over
    all its sessions: on a loaded machine a session silent through the hold can miss its
    liveness pong and be replaced, and the note then goes to the new one."""
    return [
        str(e["response"]["instructions"])
        for c in srv.model.connections
        if not briefs(c)
        for e in c.received("response.create")
        if "instructions" in (e.get("response") or {})
    ]


async def caller_back(srv: Any, caller_sid: str) -> asyncio.Task[Any]:
    """The caller's leg, which hangs up once its agent was told the transfer did not happen
    and had a moment to say so."""
    hang_up = asyncio.Event()

    async def told() -> None:
        await wait_for(lambda: any("did not happen" in n for n in notes(srv)), 40, "the note")
        await asyncio.sleep(1.0)  # the note plays (no assertion rests on hearing it)
        hang_up.set()

    waiter = asyncio.create_task(told())  # (fails the test below if the note never came)
    leg = srv.call(CALLER_AUDIO, call_sid=caller_sid, max_tail_s=40, ended=hang_up)
    return asyncio.create_task(_after(leg, waiter))


async def _after(leg: Any, waiter: asyncio.Task[None]) -> Any:
    try:
        return await leg
    finally:
        waiter.cancel()


async def caller_leg(srv: Any, stand_in: Any) -> tuple[str, asyncio.Task[Any]]:
    caller_sid = "CA" + secrets.token_hex(16)
    leg = srv.call(
        CALLER_AUDIO, call_sid=caller_sid, ended=stand_in.leaves(caller_sid), max_tail_s=40
    )
    return caller_sid, asyncio.create_task(leg)


def assert_caller_back(log: list[dict[str, Any]], srv: Any, outcome: str) -> dict[str, Any]:
    """The caller's leg after a transfer that did not happen: the hold stopped, the agent
    told to say so and offer a message, the call went on until the caller hung up."""
    declined = events(log, "transfer.declined") or events(log, "transfer.timeout")
    assert declined and declined[0]["outcome"] == outcome, declined
    stopped = events(log, "hold.stopped")
    assert stopped and stopped[0]["why"] == "released"
    said = notes(srv)
    assert any("did not happen" in s and "to take a message" in s for s in said), said
    assert log[-1]["event"] == "call.end" and log[-1]["reason"] == "caller_hangup"
    return declined[0]


async def test_accepted_by_voice_joins_both_in_a_conference(live_server) -> None:
    async with twilio_api() as (stand_in, api):
        async with live_server(
            overrides=warm_settings(api),
            reply=lambda _: tone(600, 300),
            tool_call_in=agents(ACCEPT),
        ) as srv:
            caller_sid, caller = await caller_leg(srv, stand_in)
            person = await answer_person(srv, stand_in, script=PERSON_SAYS, max_tail_s=30)
            caller_result = await caller
            person_sid, form = await dialled(srv, stand_in)
            caller_log = await final_log(srv, caller_sid)
            person_log = await final_log(srv, person_sid)
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                metrics = metric_samples((await http.get("/metrics")).text)
            briefing_asked = person_connection(srv).received("response.create")[0]
    # the person's call: from our number, ringing at most TRANSFER_RING_TIMEOUT, with signed
    # callbacks naming the transfer
    assert form["To"] == TARGET and form["From"] == FROM and form["Timeout"] == "25"
    assert "transfer=" in form["Url"] and "transfer=" in form["StatusCallback"]
    # the person heard the briefing, naming the caller's request
    assert SUMMARY in briefing_asked["response"]["instructions"]
    assert person.turns and person.turns[0].frames > 0
    assert events(person_log, "transfer.briefing")[0]["summary"] == SUMMARY
    # the caller heard the hold sound while the person was briefed
    hold = events(caller_log, "hold.started")
    assert hold and hold[0]["why"] == "transfer"
    held = events(caller_log, "hold.stopped")[0]  # at the call's end: moved to the conference
    assert held["why"] == "call_end" and held["sent_ms"] >= 1000
    assert len(caller_result.frames) * 0.02 >= 0.3 + 1.0  # the 300 ms reply, then the hold
    # both calls moved into one conference; the agent left both legs
    room = f"warm-{caller_sid}"
    for sid in (caller_sid, person_sid):
        assert any(room in u.get("Twiml", "") for u in stand_in.updates(sid)), sid
    started = events(caller_log, "transfer.started")[0]
    assert started["person_leg"] == person_sid and started["destination"] == "sales"
    accepted = events(caller_log, "transfer.accepted")[0]
    assert accepted["via"] == f"twilio_conference {room}"
    assert events(person_log, "transfer.accepted")[0]["why"] == "voice"
    assert caller_log[-1]["reason"] == "transferred" and person_log[-1]["reason"] == "transferred"
    assert metrics[("telephony_transfers_total", (("mode", "warm"), ("outcome", "accepted")))] == 1


async def test_declined_by_voice_gives_the_caller_back(live_server) -> None:
    async with twilio_api() as (stand_in, api):
        async with live_server(
            overrides=warm_settings(api),
            reply=lambda _: tone(600, 300),
            tool_call_in=agents(DECLINE),
        ) as srv:
            caller_sid = "CA" + secrets.token_hex(16)
            caller = await caller_back(srv, caller_sid)
            await answer_person(srv, stand_in, script=PERSON_SAYS, max_tail_s=30)
            await caller
            person_sid, _ = await dialled(srv, stand_in)
            caller_log = await final_log(srv, caller_sid)
            person_log = await final_log(srv, person_sid)
    declined = assert_caller_back(caller_log, srv, "declined")
    assert declined["why"] == "in a meeting until three"
    # the person's agent said goodbye, then their leg hung up; not in the conference
    assert events(person_log, "transfer.declined")[0]["why"] == "in a meeting until three"
    assert person_log[-1]["reason"] == "transfer_declined"
    assert stand_in.updates(person_sid) == [{"Status": "completed"}]
    assert not stand_in.updates(caller_sid)


async def test_declined_by_keypad(live_server) -> None:
    async with twilio_api() as (stand_in, api):
        async with live_server(
            overrides=warm_settings(api), reply=lambda _: tone(600, 300), tool_call_in=agents(None)
        ) as srv:
            caller_sid = "CA" + secrets.token_hex(16)
            caller = await caller_back(srv, caller_sid)
            await answer_person(srv, stand_in, dtmf=[(1.0, "2")], max_tail_s=30)
            await caller
            person_sid, _ = await dialled(srv, stand_in)
            caller_log = await final_log(srv, caller_sid)
            person_log = await final_log(srv, person_sid)
    declined = assert_caller_back(caller_log, srv, "declined")
    assert declined["why"] == "keypad"
    assert events(person_log, "transfer.declined")[0]["why"] == "keypad"
    assert person_log[-1]["reason"] == "transfer_declined"


async def test_no_answer_within_the_ring_timeout(live_server) -> None:
    """Nobody answers: Twilio gives up after ``Timeout`` and posts ``no-answer``."""
    async with twilio_api() as (stand_in, api):
        overrides = warm_settings(api, transfer_ring_timeout=5)
        async with live_server(
            overrides=overrides, reply=lambda _: tone(600, 300), tool_call_in=agents(None)
        ) as srv:
            caller_sid = "CA" + secrets.token_hex(16)
            caller = await caller_back(srv, caller_sid)
            person_sid, form = await dialled(srv, stand_in)
            assert form["Timeout"] == "5"
            status = await asyncio.to_thread(
                callback, srv, form, "StatusCallback", person_sid, CallStatus="no-answer"
            )
            await caller
            caller_log = await final_log(srv, caller_sid)
    assert status == 204
    assert_caller_back(caller_log, srv, "no_answer")
    assert not stand_in.updates(person_sid)  # nothing left to hang up


async def test_no_decision_within_the_decide_timeout(live_server) -> None:
    """The person answers but never decides: ``TRANSFER_DECIDE_TIMEOUT`` ends their leg."""
    async with twilio_api() as (stand_in, api):
        overrides = warm_settings(api, transfer_decide_timeout=4)
        async with live_server(
            overrides=overrides, reply=lambda _: tone(600, 300), tool_call_in=agents(None)
        ) as srv:
            caller_sid = "CA" + secrets.token_hex(16)
            caller = await caller_back(srv, caller_sid)
            await answer_person(srv, stand_in, max_tail_s=30)
            await caller
            person_sid, _ = await dialled(srv, stand_in)
            caller_log = await final_log(srv, caller_sid)
    assert_caller_back(caller_log, srv, "timeout")
    assert stand_in.updates(person_sid) == [{"Status": "completed"}]


async def test_the_persons_voicemail_declines(live_server) -> None:
    async with twilio_api() as (stand_in, api):
        async with live_server(
            overrides=warm_settings(api), reply=lambda _: tone(600, 300), tool_call_in=agents(None)
        ) as srv:
            caller_sid = "CA" + secrets.token_hex(16)
            caller = await caller_back(srv, caller_sid)
            person = asyncio.create_task(answer_person(srv, stand_in, max_tail_s=30))
            person_sid, form = await dialled(srv, stand_in)
            await wait_for(lambda: srv.services.registry.live.get(person_sid), 10, "person leg")
            status = await asyncio.to_thread(
                callback,
                srv,
                form,
                "AsyncAmdStatusCallback",
                person_sid,
                AnsweredBy="machine_end_beep",
            )
            await person
            await caller
            caller_log = await final_log(srv, caller_sid)
    assert status == 204
    declined = assert_caller_back(caller_log, srv, "voicemail")
    assert declined["why"] == "machine_end_beep"
    assert stand_in.updates(person_sid) == [{"Status": "completed"}]


async def test_caller_hangs_up_on_hold_ends_the_persons_leg(live_server) -> None:
    async with twilio_api() as (stand_in, api):
        async with live_server(
            overrides=warm_settings(api), reply=lambda _: tone(600, 300), tool_call_in=agents(None)
        ) as srv:
            hang_up = asyncio.Event()
            caller_sid = "CA" + secrets.token_hex(16)
            caller = asyncio.create_task(
                srv.call(CALLER_AUDIO, call_sid=caller_sid, max_tail_s=40, ended=hang_up)
            )
            person = asyncio.create_task(answer_person(srv, stand_in, max_tail_s=30))
            person_sid, _ = await dialled(srv, stand_in)
            await wait_for(lambda: srv.services.registry.live.get(person_sid), 10, "person leg")
            hang_up.set()
            await caller
            await person
            caller_log = await final_log(srv, caller_sid)
            person_log = await final_log(srv, person_sid)
    cancelled = events(caller_log, "transfer.cancelled")
    assert cancelled and cancelled[0]["person_leg"] == person_sid
    assert caller_log[-1]["reason"] == "caller_hangup"
    assert stand_in.updates(person_sid) == [{"Status": "completed"}]
    assert person_log[-1]["event"] == "call.end"


async def test_a_person_leg_without_its_briefing_is_hung_up(live_server) -> None:
    async with twilio_api() as (_stand_in, api):
        async with live_server(overrides=warm_settings(api)) as srv:
            answer_error = None
            try:
                await srv.answer(webhook="/incoming-call?transfer=" + "x" * 24)
            except ValueError as exc:
                answer_error = str(exc)
    assert answer_error is not None and "<Hangup" in answer_error and "no longer" in answer_error


async def test_an_operator_starts_one_from_the_console(live_server) -> None:
    """The console's Transfer button on a live call: the live list shows the transfer waiting,
    the call page its outcome."""
    token = "console-token-0123456789abcdef"
    async with twilio_api() as (stand_in, api):
        overrides = warm_settings(api, console_token=token)
        async with live_server(overrides=overrides, reply=lambda _: tone(600, 300)) as srv:
            hang_up = asyncio.Event()
            caller_sid = "CA" + secrets.token_hex(16)
            caller = asyncio.create_task(
                srv.call(SILENCE * 8000, call_sid=caller_sid, max_tail_s=40, ended=hang_up)
            )
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=srv.base_url, headers=headers) as http:

                def attached() -> bool:  # the agent can announce the transfer
                    call = srv.services.registry.live.get(caller_sid)
                    return call is not None and call.control.session is not None

                await wait_for(attached, 10, "the caller's session")
                path = f"/console/calls/{caller_sid}/transfer"
                forged = await http.post(path, json={"destination": "sales"})
                unknown = await http.post(
                    path, json={"destination": "billing"}, headers={"X-Console": "1"}
                )
                started = await http.post(
                    path, json={"destination": "sales"}, headers={"X-Console": "1"}
                )
                person_sid, form = await dialled(srv, stand_in)
                live = (await http.get("/console/live.json")).json()
                await asyncio.to_thread(
                    callback, srv, form, "StatusCallback", person_sid, CallStatus="busy"
                )
                await wait_for(lambda: srv.services.registry.live[caller_sid].control.warm.outcome)
                hang_up.set()
                await caller
                await final_log(srv, caller_sid)
                page = (await http.get(f"/console/calls/{caller_sid}")).text
    assert (forged.status_code, unknown.status_code, started.status_code) == (403, 422, 200)
    assert live[0]["transfer"] == "sales: waiting for the person"
    assert "warm transfer to sales (operator): busy (call status busy) after" in page


SIP_SECRET = "whsec_" + base64.b64encode(b"sip-handoff-secret-0123456789").decode()
DOMAIN = "example.sip.twilio.com"
SIP_CALLER = '"Dana" <sip:+15550001111@pstn.twilio.com>'


async def test_a_sip_calls_warm_transfer_is_handed_off_to_a_twilio_call(live_server) -> None:
    """The SIP path (``SIP_TRANSFER_DOMAIN``): the SIP call's agent tells the caller, the
    call is referred to ``sip:warm-<key>@<domain>``; Twilio's trunk brings the caller to that
    SIP Domain, whose webhook (ours) streams the call with its handoff; there the caller holds
    at once (no greeting), the person is dialled and briefed with the SIP caller's request and
    number, accepts, and both are joined. A handoff key is good for one call."""
    openai = OpenAIApiStandIn()
    async with twilio_api() as (stand_in, api), run_server(openai.app) as openai_url:
        overrides = warm_settings(
            api,
            openai_webhook_secret=SIP_SECRET,
            openai_base_url=f"{openai_url}/v1",
            sip_transfer_domain=DOMAIN,
            greeting="Hello.",  # the SIP agent's first response asks for the transfer
        )
        async with live_server(
            overrides=overrides, reply=lambda _: tone(600, 300), tool_call_in=agents(ACCEPT)
        ) as srv:
            body, headers = signed_webhook(SIP_SECRET, "rtc_warm", {"From": SIP_CALLER})
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                delivered = await http.post("/openai/webhook", content=body, headers=headers)
            await wait_for(lambda: openai.of("refer"), 20, "the SIP call referred")
            [(referred, refer)] = openai.of("refer")
            sip_log = await final_log(srv, "rtc_warm")
            # Twilio: the trunk's REFER reaches the SIP Domain, whose Voice URL is ours
            uri = refer["target_uri"]
            caller_sid = "CA" + secrets.token_hex(16)
            answer = await srv.answer(call_sid=caller_sid, to_number=uri, from_number=SIP_CALLER)
            caller = asyncio.create_task(
                srv.call(b"", answer=answer, ended=stand_in.leaves(caller_sid), max_tail_s=40)
            )
            await answer_person(srv, stand_in, script=PERSON_SAYS, max_tail_s=30)
            await caller
            person_sid, _ = await dialled(srv, stand_in)
            caller_log = await final_log(srv, caller_sid)
            briefing_asked = person_connection(srv).received("response.create")[0]
            again = await srv.answer(to_number=uri, from_number=SIP_CALLER)
            again_log = read_call_log(srv.settings.call_log_dir / f"{again.call_sid}.jsonl")
    assert delivered.status_code == 200 and referred == "rtc_warm"
    key = uri.removeprefix("sip:warm-").removesuffix(f"@{DOMAIN}")
    assert uri == f"sip:warm-{key}@{DOMAIN}" and len(key) >= 16
    # the SIP call: the agent asked, the caller was told, then referred and left
    assert events(sip_log, "transfer.briefing")[0]["summary"] == SUMMARY
    moved = events(sip_log, "call.transfer")[0]
    assert (moved["mode"], moved["via"], moved["handoff"]) == ("warm", "refer", key)
    kinds = [r["event"] for r in sip_log]
    assert kinds.index("call.transfer") > kinds.index("response.done")  # after it was said
    assert sip_log[-1]["reason"] == "transferred"
    # the Twilio call: no greeting, the hold at once, the briefing as the SIP agent gave it
    assert answer.parameters["Handoff"] == key
    assert not events(caller_log, "greeting.requested")
    assert events(caller_log, "transfer.briefing")[0]["handed_off_by"] == "rtc_warm"
    assert events(caller_log, "hold.started")[0]["why"] == "transfer"
    instructions = briefing_asked["response"]["instructions"]
    assert SUMMARY in instructions and "+15550001111" in instructions
    room = f"warm-{caller_sid}"
    for sid in (caller_sid, person_sid):
        assert any(room in u.get("Twiml", "") for u in stand_in.updates(sid)), sid
    assert events(caller_log, "transfer.accepted")[0]["via"] == f"twilio_conference {room}"
    assert caller_log[-1]["reason"] == "transferred"
    # the same URI again: the handoff was taken; a call like any other, said so in its log
    assert "Handoff" not in again.parameters
    assert events(again_log, "transfer.unknown")
