"""Twilio signatures on the webhook and the media handshake: fail closed, forged and replayed
signatures refused, correct ones accepted behind a proxy."""

from __future__ import annotations

import logging
import urllib.error

import pytest
from fastapi.testclient import TestClient
from helpers import (
    AUTH_TOKEN,
)
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from telephony.app import create_app
from telephony.config import Settings
from telephony.simulate import answer_call

CALL_SID = "CA" + "2" * 32


PARAMS = {"CallSid": CALL_SID, "From": "+15550001111", "To": "+15550002222"}


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",  # empty
        "bm90IGEgc2lnbmF0dXJl",  # forged
        RequestValidator("some-other-token").compute_signature(
            "http://testserver/incoming-call", PARAMS
        ),  # signed with another account's token
        RequestValidator(AUTH_TOKEN).compute_signature(
            "http://testserver/incoming-call", {**PARAMS, "From": "+15559999999"}
        ),  # replayed from another request: other params
        RequestValidator(AUTH_TOKEN).compute_signature(
            "http://testserver/other-path", PARAMS
        ),  # replayed from another URL
    ],
)
def test_webhook_refuses_bad_signatures(
    settings: Settings, signature: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
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
        # the same without PUBLIC_URL, from the tunnel's X-Forwarded-* headers
        plain = create_app(settings)
    with TestClient(plain) as client:
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
        assert response.status_code == 200


def test_without_auth_token_everything_is_refused_unless_dev_mode(settings: Settings) -> None:
    no_token = settings.model_copy(update={"twilio_auth_token": None})
    with TestClient(create_app(no_token)) as client:
        assert client.post("/incoming-call", data=PARAMS).status_code == 403
    dev = no_token.model_copy(update={"allow_unsigned": True})
    with TestClient(create_app(dev)) as client:
        response = client.post("/incoming-call", data=PARAMS)
        assert response.status_code == 200 and "<Connect>" in response.text


async def test_media_handshake_refuses_missing_and_forged_signatures(live_server) -> None:
    async with live_server() as srv:
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
