"""Configuration loading and the Voice webhook's TwiML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import AUTH_TOKEN
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from telephony.app import create_app
from telephony.call_log import read_call_log
from telephony.config import ConfigError, Settings, load_settings

CALL_SID = "CA" + "1" * 32


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "PUBLIC_URL", "PORT", "HOST", "OPENAI_REALTIME_MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.openai_realtime_model == "gpt-realtime" and s.port == 8000
    assert s.call_log_dir == Path("calls") and s.openai_api_key is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("PUBLIC_URL", "ftp://example.com"),
        ("PUBLIC_URL", "https://example.com/?x=1"),
        ("OPENAI_REALTIME_URL", "https://api.openai.com"),
        ("TWILIO_ACCOUNT_SID", "nope"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_unknown_dotenv_key_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PORT=8001\nOPENAI_REALTIME_MODLE=typo\n")
    with pytest.raises(ConfigError, match="OPENAI_REALTIME_MODLE: unknown setting"):
        load_settings()
    (tmp_path / ".env").write_text("PORT=8001\n")
    assert load_settings().port == 8001


def test_secrets_do_not_print(tmp_path: Path) -> None:
    s = Settings(openai_api_key="sk-secret-value", twilio_auth_token="tok-secret-value")
    assert "secret-value" not in repr(s) and "secret-value" not in str(s.model_dump())


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
