"""Outbound calls: POST /calls and the dial command create the call through the REST API, the
answer streams to us, and the signed status callbacks are logged."""

from __future__ import annotations

import asyncio

import httpx
from helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    events,
    twilio_api,
)
from twilio.request_validator import RequestValidator

from telephony.observability.call_log import read_call_log
from telephony.simulate import answer_call

DIAL_TOKEN = "dial-secret-0123456789abcdef"


async def test_dial_places_a_call_that_streams_to_us_and_logs_its_callbacks(
    live_server, monkeypatch
) -> None:
    async with twilio_api() as (twilio, overrides):
        overrides.update(
            {
                "dial_api_token": DIAL_TOKEN,
                "twilio_from_number": "+15550009999",
            }
        )
        async with live_server(overrides=overrides) as srv:
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                refused = await http.post("/calls", json={"to": "+15551112222"})
                assert refused.status_code == 401
                wrong = await http.post(
                    "/calls", json={"to": "+15551112222"}, headers={"Authorization": "Bearer x"}
                )
                assert wrong.status_code == 401
                bad_number = await http.post(
                    "/calls",
                    json={"to": "5551112222"},
                    headers={"Authorization": f"Bearer {DIAL_TOKEN}"},
                )
                assert bad_number.status_code == 422
                placed = await http.post(
                    "/calls",
                    json={"to": "+15551112222"},
                    headers={"Authorization": f"Bearer {DIAL_TOKEN}"},
                )
                assert placed.status_code == 201
                call_sid = placed.json()["call_sid"]
                (create,) = twilio.requests
                assert create.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
                assert create.form["To"] == "+15551112222" and create.form["From"] == "+15550009999"
                assert create.form["Url"] == f"{srv.base_url}/incoming-call"
                assert create.form["StatusCallback"] == f"{srv.base_url}/call-status"
                assert create.form["StatusCallbackEvent"] == "initiated ringing answered completed"
                # Twilio reports progress (signed), then requests the TwiML when answered
                for status in ("initiated", "ringing", "in-progress"):
                    params = {
                        "CallSid": call_sid,
                        "AccountSid": ACCOUNT_SID,
                        "CallStatus": status,
                        "Direction": "outbound-api",
                    }
                    url = f"{srv.base_url}/call-status"
                    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
                    response = await http.post(
                        "/call-status", data=params, headers={"X-Twilio-Signature": signature}
                    )
                    assert response.status_code == 204
                forged = await http.post(
                    "/call-status", data={"CallSid": call_sid, "CallStatus": "completed"}
                )
                assert forged.status_code == 403
            answer = await answer_call(srv.base_url, call_sid=call_sid, auth_token=AUTH_TOKEN)
            assert answer.stream_url.endswith("/media-stream") and answer.parameters["token"]
            log = read_call_log(srv.settings.call_log_dir / f"{call_sid}.jsonl")
    assert events(log, "call.dialed")[0]["to"] == "+15551112222"
    assert [r["status"] for r in events(log, "call.status")] == [
        "initiated",
        "ringing",
        "in-progress",
    ]
    assert events(log, "webhook")[0]["to"] == "+15550002222"
    # the model session opened when the call was dialled, held through the ring (Twilio's
    # 60 s ring timeout and MODEL_PREWARM_TIMEOUT); the webhook at answer opened no other
    prewarm = events(log, "prewarm")
    assert [r["outcome"] for r in prewarm] == ["opened"], prewarm
    assert prewarm[0]["hold_s"] == 60 + srv.settings.model_prewarm_timeout


async def test_dial_keeps_to_its_prefixes_its_rate_and_public_url(live_server) -> None:
    async with twilio_api() as (twilio, overrides):
        overrides.update(
            {
                "dial_api_token": DIAL_TOKEN,
                "twilio_from_number": "+15550009999",
                "dial_allowed_prefixes": "+1,+44",
                "dial_rate_limit": 2,
            }
        )
        async with live_server(overrides=overrides) as srv:
            auth = {"Authorization": f"Bearer {DIAL_TOKEN}"}
            # forwarded headers never decide the URLs Twilio is told to fetch
            forged = {**auth, "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
            async with httpx.AsyncClient(base_url=srv.base_url) as http:
                abroad = await http.post("/calls", json={"to": "+33144556677"}, headers=auth)
                assert abroad.status_code == 422
                statuses = [
                    (
                        await http.post("/calls", json={"to": "+15551112222"}, headers=forged)
                    ).status_code
                    for _ in range(3)
                ]
    assert statuses == [201, 201, 429]
    assert all(r.form["Url"] == f"{srv.base_url}/incoming-call" for r in twilio.requests)
    assert len(twilio.requests) == 2


async def test_dial_endpoint_is_off_without_a_token(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.base_url) as http:
        response = await http.post("/calls", json={"to": "+15551112222"})
    assert response.status_code == 404


async def test_dial_command(monkeypatch, capsys, tmp_path) -> None:
    from telephony.dial import main

    async with twilio_api() as (twilio, overrides):
        env = {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": overrides["twilio_api_base_url"],
            "TWILIO_FROM_NUMBER": "+15550009999",
            "PUBLIC_URL": "https://public.example",
            "CALL_LOG_DIR": str(tmp_path / "calls"),
        }
        monkeypatch.chdir(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert await asyncio.to_thread(main, ["+15551112222"]) == 0
        assert await asyncio.to_thread(main, ["not-a-number"]) == 2
    call_sid = capsys.readouterr().out.split()[0]
    assert call_sid in twilio.created
    assert twilio.requests[0].form["Url"] == "https://public.example/incoming-call"
    assert (tmp_path / "calls" / f"{call_sid}.jsonl").read_text().count("call.dialed") == 1


async def test_call_control_acts_only_on_calls_this_service_answered_or_dialled(
    live_server,
) -> None:
    """Issue 26, finding 11: the Twilio account may carry other apps' calls. Before,
    ``DIAL_API_TOKEN`` could hang up or transfer any of them (the REST fallback acted on any
    CallSid)."""
    foreign = "CA" + "7" * 32
    async with twilio_api() as (twilio, overrides):
        overrides.update(
            {
                "dial_api_token": DIAL_TOKEN,
                "twilio_from_number": "+15550009999",
                "transfer_targets": "desk=+15550004444",
            }
        )
        async with live_server(overrides=overrides) as srv:
            auth = {"Authorization": f"Bearer {DIAL_TOKEN}"}
            async with httpx.AsyncClient(base_url=srv.base_url, headers=auth) as http:
                hung = await http.post(f"/calls/{foreign}/hangup")
                moved = await http.post(f"/calls/{foreign}/transfer", json={"destination": "desk"})
                assert (hung.status_code, moved.status_code) == (404, 404)
                assert not [r for r in twilio.requests if foreign in r.path]
                # a call we dialled (still ringing: no stream, no owner) is ours to hang up
                placed = await http.post("/calls", json={"to": "+15551112222"})
                ours = placed.json()["call_sid"]
                assert (await http.post(f"/calls/{ours}/hangup")).json()["via"] == "twilio_rest"
                # and so is one whose webhook we answered
                answered = await srv.answer()
                hung_up = await http.post(f"/calls/{answered.call_sid}/hangup")
                assert hung_up.json()["via"] == "twilio_rest"
    done = [r.path for r in twilio.requests if r.form.get("Status") == "completed"]
    assert any(ours in p for p in done) and any(answered.call_sid in p for p in done)
