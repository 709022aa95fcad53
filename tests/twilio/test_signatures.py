"""Twilio signatures on the webhook and the media handshake: fail closed, forged and replayed
signatures refused, correct ones accepted behind a proxy."""

from __future__ import annotations

import json
import logging
import urllib.error

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import AUTH_TOKEN, with_settings
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from telephony.app import create_app
from telephony.config import Settings
from telephony.simulate import answer_call

CALL_SID = "CA" + "2" * 32
PUBLIC = "https://public.example"


PARAMS = {"CallSid": CALL_SID, "From": "+15550001111", "To": "+15550002222"}


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",  # empty
        "bm90IGEgc2lnbmF0dXJl",  # forged
        RequestValidator("some-other-token").compute_signature(
            f"{PUBLIC}/incoming-call", PARAMS
        ),  # signed with another account's token
        RequestValidator(AUTH_TOKEN).compute_signature(
            f"{PUBLIC}/incoming-call", {**PARAMS, "From": "+15559999999"}
        ),  # replayed from another request: other params
        RequestValidator(AUTH_TOKEN).compute_signature(
            f"{PUBLIC}/other-path", PARAMS
        ),  # replayed from another URL
        RequestValidator(AUTH_TOKEN).compute_signature(
            "https://other-deployment.example/incoming-call", PARAMS
        ),  # made for another deployment on the same account
    ],
)
def test_webhook_refuses_bad_signatures(
    settings: Settings, signature: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    app = create_app(settings.model_copy(update={"public_url": PUBLIC}))
    with caplog.at_level(logging.WARNING), TestClient(app) as client:
        response = client.post("/incoming-call", data=PARAMS, headers=headers)
    assert response.status_code == 403
    assert "Connect" not in response.text  # no TwiML, no stream, no cost
    assert not (settings.call_log_dir / f"{CALL_SID}.jsonl").exists()
    assert "refused" in caplog.text and AUTH_TOKEN not in caplog.text


def test_webhook_accepts_a_correct_signature_behind_a_proxy(settings: Settings) -> None:
    """Twilio signed the public URL; the app sees another host and port (testserver:80)."""
    app = create_app(settings.model_copy(update={"public_url": "https://public.example:8443"}))
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "https://public.example:8443/incoming-call", PARAMS
    )
    with TestClient(app) as client:
        response = client.post(
            "/incoming-call", data=PARAMS, headers={"X-Twilio-Signature": signature}
        )
        assert response.status_code == 200 and "<Connect>" in response.text
        # forwarded headers decide nothing: a signature for the host they name is refused
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            "https://tunnel.example/incoming-call", PARAMS
        )
        response = client.post(
            "/incoming-call",
            data=PARAMS,
            headers={
                "X-Twilio-Signature": signature,
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "tunnel.example",
            },
        )
        assert response.status_code == 403


def test_without_auth_token_everything_is_refused_unless_dev_mode(settings: Settings) -> None:
    no_token = settings.model_copy(update={"twilio_auth_token": None})
    with TestClient(create_app(no_token)) as client:
        assert client.post("/incoming-call", data=PARAMS).status_code == 403
    dev = no_token.model_copy(update={"allow_unsigned": True, "public_url": None})
    with TestClient(create_app(dev)) as client:
        response = client.post("/incoming-call", data=PARAMS)
        assert response.status_code == 200 and "<Connect>" in response.text


async def test_media_handshake_refuses_missing_and_forged_signatures(live_server) -> None:
    cold = {"model_prewarm": False}  # the stream path alone (the pre-warm: test_prewarm.py)
    async with live_server(overrides=cold) as srv:
        answer = await srv.answer()
        for headers in ({}, {"X-Twilio-Signature": "Zm9yZ2Vk"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(answer.stream_url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403
        forged_for_other_host = RequestValidator(AUTH_TOKEN).compute_signature(
            "wss://elsewhere.example/media-stream", {}
        )
        with pytest.raises(InvalidStatus):
            async with connect(
                answer.stream_url, additional_headers={"X-Twilio-Signature": forged_for_other_host}
            ):
                pass
        assert not srv.model.connections  # no model session was opened


async def test_bad_webhook_call_is_http_error_for_the_simulator(live_server) -> None:
    async with live_server() as srv:
        with pytest.raises(urllib.error.HTTPError) as refused:
            await answer_call(srv.base_url, auth_token="wrong-token")
        assert refused.value.code == 403


SHARED_KEY = "shared-key-secret-0123456789abcdef0123"
SHARED_KEY_ID = "webhooks_sharedkey_0123"


def sha256_signature(url: str, params: dict[str, str], key: str = SHARED_KEY) -> str:
    return RequestValidator(key).compute_signature(url, params, "HMAC_SHA256")


@pytest.mark.parametrize(
    ("settings_header", "key", "algorithm", "status"),
    [
        (f"key={SHARED_KEY_ID},algorithm=HMAC_SHA256", SHARED_KEY, "HMAC_SHA256", 200),
        (f"key={SHARED_KEY_ID},algorithm=HMAC_SHA1", SHARED_KEY, "HMAC_SHA1", 200),
        (None, AUTH_TOKEN, "HMAC_SHA1", 200),  # no settings header: the auth token, SHA-1
        ("key=webhooks_sharedkey_other,algorithm=HMAC_SHA256", SHARED_KEY, "HMAC_SHA256", 403),
        (f"key={SHARED_KEY_ID},algorithm=HMAC_SHA512", SHARED_KEY, "HMAC_SHA256", 403),
        (f"key={SHARED_KEY_ID},algorithm=HMAC_SHA256", AUTH_TOKEN, "HMAC_SHA256", 403),
        (None, SHARED_KEY, "HMAC_SHA256", 403),  # a SHA-256 signature needs the header
    ],
)
def test_webhook_shared_key_signatures(
    settings: Settings, settings_header: str | None, key: str, algorithm: str, status: int
) -> None:
    app = create_app(
        with_settings(
            settings,
            twilio_webhook_shared_key=SHARED_KEY,
            twilio_webhook_shared_key_id=SHARED_KEY_ID,
        )
    )
    signature = RequestValidator(key).compute_signature(
        f"{settings.public_url}/incoming-call", PARAMS, algorithm
    )
    headers = {"X-Twilio-Signature": signature}
    if settings_header:
        headers["X-Twilio-Webhooks-Signature-Settings"] = settings_header
    with TestClient(app) as client:
        assert client.post("/incoming-call", data=PARAMS, headers=headers).status_code == status


def test_a_shared_key_signature_without_a_configured_key_is_refused(settings: Settings) -> None:
    headers = {
        "X-Twilio-Signature": sha256_signature(f"{settings.public_url}/incoming-call", PARAMS),
        "X-Twilio-Webhooks-Signature-Settings": "key=anything,algorithm=HMAC_SHA256",
    }
    with TestClient(create_app(settings)) as client:
        assert client.post("/incoming-call", data=PARAMS, headers=headers).status_code == 403


async def test_shared_key_signatures_on_the_media_handshake_and_status_callbacks(
    live_server,
) -> None:
    overrides = {"twilio_webhook_shared_key": SHARED_KEY}
    async with live_server(overrides=overrides) as srv:
        base = srv.base_url
        settings_header = {"X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_SHA256"}
        status = {"CallSid": CALL_SID, "CallStatus": "ringing", "AccountSid": "AC" + "0" * 32}
        async with httpx.AsyncClient(base_url=base) as http:
            signed = await http.post(
                "/call-status",
                data=status,
                headers={
                    **settings_header,
                    "X-Twilio-Signature": sha256_signature(f"{base}/call-status", status),
                },
            )
            assert signed.status_code == 204
        answer = await srv.answer()
        url = answer.stream_url
        headers = {**settings_header, "X-Twilio-Signature": sha256_signature(url, {})}
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
        with pytest.raises(InvalidStatus):
            wrong = {**settings_header, "X-Twilio-Signature": sha256_signature(url, {}, "other")}
            async with connect(url, additional_headers=wrong):
                pass


def test_crafted_signatures_are_refused_cleanly(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        for signature in ("é" * 28, "=" * 500, "a b c", "\x7f" * 28):
            headers = {"X-Twilio-Signature": signature.encode("latin-1")}
            response = client.post("/incoming-call", data=PARAMS, headers=headers)
            assert response.status_code == 403  # a refusal, never a 500


def test_refusal_warnings_come_at_a_bounded_rate(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        for _ in range(50):
            client.post("/incoming-call", data=PARAMS, headers={"X-Twilio-Signature": "Zm9v"})
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(refusals) <= 5
