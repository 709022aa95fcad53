"""The Voice webhook answers TwiML: <Connect><Stream> with the call's parameters and a token, a
stream URL from PUBLIC_URL or the forwarded headers, and 400 for a missing or unsafe CallSid."""

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


def test_webhook_derives_host_from_forwarded_headers(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        root = _post(
            client,
            "https://tunnel.example/incoming-call",
            {"X-Forwarded-Host": "tunnel.example", "X-Forwarded-Proto": "https"},
        )
        stream = root.find("./Connect/Stream")
        assert stream is not None and stream.attrib["url"] == "wss://tunnel.example/media-stream"
        root = _post(
            client,
            "https://direct.example:8443/incoming-call",
            {"Host": "direct.example:8443", "X-Forwarded-Proto": "https"},
        )
        stream = root.find("./Connect/Stream")
        assert stream is not None
        assert stream.attrib["url"] == "wss://direct.example:8443/media-stream"


@pytest.mark.parametrize("call_sid", ["", "../../etc/passwd", "CA" + "x" * 200])
def test_webhook_refuses_missing_or_unsafe_callsid(settings: Settings, call_sid: str) -> None:
    params = {"CallSid": call_sid}
    headers = {"X-Twilio-Signature": sign("http://testserver/incoming-call", params)}
    with TestClient(create_app(settings)) as client:
        response = client.post("/incoming-call", data=params, headers=headers)
    assert response.status_code == 400
    log_dir = settings.call_log_dir
    assert not log_dir.exists() or not any(log_dir.iterdir())  # nothing written
