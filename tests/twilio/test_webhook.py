"""The Voice webhook answers TwiML: <Connect><Stream> with the call's parameters and a token, a
stream URL from PUBLIC_URL (from Host only in the loopback development mode), and 400 for a
missing or malformed CallSid."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient
from helpers import (
    AUTH_TOKEN,
)
from twilio.request_validator import RequestValidator

from telephony.app import create_app
from telephony.config import Settings
from telephony.observability.call_log import read_call_log

CALL_SID = "CA" + "1" * 32


WEBHOOK = {
    "CallSid": CALL_SID,
    "From": "+15550001111",
    "To": "+15550002222",
    "Direction": "inbound",
    "CallStatus": "ringing",
}


def sign(url: str, params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params)


def _post(client: TestClient, signed_url: str, headers: dict[str, str] | None = None) -> ET.Element:
    headers = dict(headers or {})
    headers["X-Twilio-Signature"] = sign(signed_url, WEBHOOK)
    response = client.post("/incoming-call", data=WEBHOOK, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text)


def test_webhook_answers_connect_stream_with_parameters(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"public_url": "https://abc.ngrok.app"}))
    with TestClient(app) as client:
        root = _post(client, "https://abc.ngrok.app/incoming-call")
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.attrib["url"] == "wss://abc.ngrok.app/media-stream"  # no query string
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    token = params.pop("token")
    assert len(token) > 40 and token.count(".") == 2  # the per-call stream token
    assert params == {
        "CallSid": CALL_SID,
        "From": "+15550001111",
        "To": "+15550002222",
        "Direction": "inbound",
    }
    log = read_call_log(settings.call_log_dir / f"{CALL_SID}.jsonl")
    assert log[0]["event"] == "webhook" and log[0]["from"] == "+15550001111"
    assert log[0]["call_sid"] == CALL_SID


def test_dev_mode_takes_its_host_from_host_and_refuses_tunnels(settings: Settings) -> None:
    dev = settings.model_copy(
        update={"twilio_auth_token": None, "public_url": None, "allow_unsigned": True}
    )
    with TestClient(create_app(dev)) as client:
        response = client.post("/incoming-call", data=WEBHOOK, headers={"Host": "127.0.0.1:8000"})
        stream = ET.fromstring(response.text).find("./Connect/Stream")
        assert stream is not None and stream.attrib["url"] == "ws://127.0.0.1:8000/media-stream"
        # a request through a tunnel or proxy never reaches a development-mode server's calls
        tunnelled = client.post(
            "/incoming-call",
            data=WEBHOOK,
            headers={"X-Forwarded-Host": "tunnel.example", "X-Forwarded-Proto": "https"},
        )
        assert tunnelled.status_code == 403


@pytest.mark.parametrize(
    "call_sid",
    [
        "",
        "../../etc/passwd",
        "CA" + "x" * 200,
        "CA" + "1" * 32 + "\n",  # a trailing newline passed `$`
        "CA" + "1" * 31,  # too short
        "CA" + "1" * 31 + "\u0661",  # a non-ASCII digit
        "AC" + "1" * 32,  # not a call
    ],
)
def test_webhook_refuses_missing_or_malformed_callsid(settings: Settings, call_sid: str) -> None:
    params = {"CallSid": call_sid}
    headers = {"X-Twilio-Signature": sign(f"{settings.public_url}/incoming-call", params)}
    with TestClient(create_app(settings)) as client:
        response = client.post("/incoming-call", data=params, headers=headers)
    assert response.status_code == 400
    log_dir = settings.call_log_dir
    assert not log_dir.exists() or not list(log_dir.glob("*.jsonl"))  # no call log written


def test_caller_values_with_control_characters_give_well_formed_twiml(settings: Settings) -> None:
    params = {**WEBHOOK, "From": "+1555\x01\x1b<>&\"'" + "9" * 500, "To": "\x00\x0b+1555"}
    headers = {"X-Twilio-Signature": sign(f"{settings.public_url}/incoming-call", params)}
    with TestClient(create_app(settings)) as client:
        response = client.post("/incoming-call", data=params, headers=headers)
    assert response.status_code == 200
    stream = ET.fromstring(response.text).find("./Connect/Stream")  # parses: well formed
    assert stream is not None
    values = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    assert values["From"].startswith("+1555<>&\"'") and len(values["From"]) == 64
    assert values["To"] == "+1555"
    assert all(v.isprintable() for v in values.values())
