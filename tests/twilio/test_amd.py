"""Who answered an outbound call: the dial request asks Twilio for asynchronous answering
machine detection, and the signed ``/amd-status`` callback reaches the call, which leaves the
voicemail on a machine (in the agent's voice, then hangs up once it has played), hangs up on a
fax, and changes nothing for a human. With the REST stand-in and the loopback model."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from helpers import ACCOUNT_SID, AUTH_TOKEN, SILENCE, events, final_log, twilio_api, wait_for
from twilio.request_validator import RequestValidator

from telephony.testing import tone
from telephony.testing.live_server import FakeLiveServer

DIAL_TOKEN = "dial-secret-0123456789abcdef"
MESSAGE = "Hi, this is Acme Dental confirming your visit on Friday at ten."


def settings(overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **overrides,
        "dial_api_token": DIAL_TOKEN,
        "twilio_from_number": "+15550009999",
        "greeting": "Hello, this is Acme Dental.",
    }


async def post_amd(http: httpx.AsyncClient, url: str, call_sid: str, answered_by: str) -> int:
    """Twilio's AMD callback to ``url`` (the one the dial request named), signed."""
    params = {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": "4210",
    }
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    path = url.removeprefix(str(http.base_url).rstrip("/"))
    response = await http.post(path, data=params, headers={"X-Twilio-Signature": signature})
    return response.status_code


async def dialed_call(srv: Any, twilio: Any, http: httpx.AsyncClient, body: dict[str, Any]):
    placed = await http.post("/calls", json=body, headers={"Authorization": f"Bearer {DIAL_TOKEN}"})
    assert placed.status_code == 201
    return placed.json()["call_sid"], twilio.requests[-1].form


async def test_the_dial_request_asks_for_asynchronous_amd(live_server) -> None:
    async with twilio_api() as (twilio, overrides):
        async with live_server(overrides=settings(overrides)) as srv:
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                _, form = await dialed_call(
                    srv, twilio, http, {"to": "+15551112222", "voicemail_message": MESSAGE}
                )
                _, plain = await dialed_call(srv, twilio, http, {"to": "+15551112222"})
    assert form["MachineDetection"] == "DetectMessageEnd"
    assert form["AsyncAmd"] == "true" and form["AsyncAmdStatusCallbackMethod"] == "POST"
    callback = urlsplit(form["AsyncAmdStatusCallback"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{srv.base_url}/amd-status"
    assert parse_qs(callback.query) == {"voicemail": [MESSAGE]}
    assert plain["AsyncAmdStatusCallback"] == f"{srv.base_url}/amd-status"  # the default


async def _call_then_amd(live_server, answered_by: str, body: dict[str, Any]) -> dict[str, Any]:
    """Dial, let the callee answer (the simulator), and 1 s after its stream has started (the
    greeting has played by then) post ``answered_by``."""
    async with twilio_api() as (twilio, overrides):
        async with live_server(
            overrides=settings(overrides), reply=lambda turn: tone(600, 1500 if turn else 800)
        ) as srv:
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                call_sid, form = await dialed_call(srv, twilio, http, body)
                call = asyncio.create_task(
                    srv.call(SILENCE * 8000 * 8, call_sid=call_sid, speed=1, tail_s=0.5)
                )
                live = srv.app.state.services.registry.live
                await wait_for(lambda: call_sid in live, 10, "the dialled call's stream")
                await asyncio.sleep(1.0)
                forged = await http.post(
                    "/amd-status", data={"CallSid": call_sid, "AnsweredBy": "fax"}
                )
                status = await post_amd(http, form["AsyncAmdStatusCallback"], call_sid, answered_by)
                result = await call
            log = await final_log(srv, call_sid)
    hangups = [r for r in twilio.requests if r.form.get("Status") == "completed"]
    return {
        "forged": forged.status_code,
        "status": status,
        "log": log,
        "result": result,
        "hangups": hangups,
        "connection": srv.model.connections[0],
    }


async def test_a_machine_gets_the_voicemail_then_the_call_hangs_up(live_server) -> None:
    outcome = await _call_then_amd(
        live_server, "machine_end_beep", {"to": "+15551112222", "voicemail_message": MESSAGE}
    )
    log, connection = outcome["log"], outcome["connection"]
    assert outcome["forged"] == 403 and outcome["status"] == 204
    assert events(log, "answered_by")[0]["answered_by"] == "machine_end_beep"
    # the agent said the message: a response asked for with it, in the session's own voice
    asked = connection.received("response.create")[-1]["response"]["instructions"]
    assert MESSAGE in asked and "answering machine" in asked
    voicemail_item = connection.responses[-1]["item_id"]
    kinds = [r["event"] for r in log]
    last_mark = max(
        i
        for i, r in enumerate(log)
        if r["event"] == "mark.played" and r["item_id"] == voicemail_item
    )
    # all of it played (its marks echoed), then voicemail.left, then the REST hang-up
    assert last_mark < kinds.index("voicemail.left") < kinds.index("call.hangup")
    played = sum(r["ms"] for r in events(log, "mark.played") if r["item_id"] == voicemail_item)
    assert played >= 1500
    assert len(outcome["hangups"]) == 1
    assert log[-1]["reason"] == "voicemail" and outcome["result"].closed_by_server


async def test_a_human_changes_nothing(live_server) -> None:
    outcome = await _call_then_amd(live_server, "human", {"to": "+15551112222"})
    log = outcome["log"]
    assert events(log, "answered_by")[0]["answered_by"] == "human"
    assert not outcome["hangups"] and not events(log, "voicemail.left")
    assert log[-1]["reason"] == "caller_hangup"


async def test_a_fax_is_hung_up_on(live_server) -> None:
    outcome = await _call_then_amd(live_server, "fax", {"to": "+15551112222"})
    log = outcome["log"]
    assert events(log, "answered_by")[0]["answered_by"] == "fax"
    assert len(outcome["hangups"]) == 1 and events(log, "call.hangup")[0]["reason"] == "fax"
    assert log[-1]["reason"] == "fax" and outcome["result"].closed_by_server


async def test_on_gpt_live_a_machine_gets_the_voicemail_then_the_call_hangs_up(
    live_server,
) -> None:
    """The same on GPT-Live (the fake GPT-Live server): the message goes to the model as a
    commentary instruction, plays whole, then the REST hang-up."""
    fake = FakeLiveServer(greeting=tone(600, 800))
    async with fake, twilio_api() as (twilio, overrides):
        live = {"realtime_backend": "live", "openai_api_key": "sk-test-not-a-real-key",
                "openai_base_url": fake.base_url}  # fmt: skip
        async with live_server(overrides={**settings(overrides), **live}) as srv:
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                body = {"to": "+15551112222", "voicemail_message": MESSAGE}
                call_sid, form = await dialed_call(srv, twilio, http, body)
                call = asyncio.create_task(
                    srv.call(SILENCE * 8000 * 8, call_sid=call_sid, speed=1, tail_s=0.5)
                )
                calls = srv.app.state.services.registry.live
                await wait_for(lambda: call_sid in calls, 10, "the dialled call's stream")
                await asyncio.sleep(1.0)  # the greeting has played
                status = await post_amd(
                    http, form["AsyncAmdStatusCallback"], call_sid, "machine_end_beep"
                )
                await call
            log = await final_log(srv, call_sid)
    assert status == 204
    (conn,) = fake.connections
    said = [e["content"] for e in conn.received if e["type"] == "session.commentary.append"]
    assert len(said) == 2 and MESSAGE in said[1] and "answering machine" in said[1]
    kinds = [r["event"] for r in log]
    # the message played whole (every speech mark echoed), then voicemail.left, the hang-up
    left = kinds.index("voicemail.left")
    speech = {r["name"] for r in events(log, "mark.sent") if r["speech"]}
    assert speech <= {r["name"] for r in events(log[:left], "mark.played")}
    assert left < kinds.index("call.hangup") and log[-1]["reason"] == "voicemail"
    assert len([r for r in twilio.requests if r.form.get("Status") == "completed"]) == 1
