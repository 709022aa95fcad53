"""No secret reaches the server log at any level: a real ``server.py`` at ``LOG_LEVEL=debug``
takes a signed call (the model socket carries the OpenAI key; the handshake carries its
signature), hangs up through Twilio's REST API, places an outbound call and serves /metrics;
its whole output is then searched for every configured secret and per-call credential."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.request
from pathlib import Path

from helpers import ACCOUNT_SID, AUTH_TOKEN, fixture_audio, run_server
from processes import ServerProcess
from twilio.request_validator import RequestValidator

from telephony.simulate import simulate_call
from telephony.testing import LoopbackRealtimeServer, TwilioApiStandIn, tone

SECRETS = {
    "OPENAI_API_KEY": "sk-test-debug-log-openai-key-0123456789",
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "STREAM_TOKEN_SECRET": "stream-token-secret-for-the-debug-log-test",
    "DIAL_API_TOKEN": "dial-token-for-the-debug-log-test-0123",
    "METRICS_TOKEN": "metrics-token-for-the-debug-log-test-01",
    "OPENAI_WEBHOOK_SECRET": "whsec_ZGVidWctbG9nLXdlYmhvb2stc2VjcmV0",
    "TWILIO_WEBHOOK_SHARED_KEY": "shared-key-secret-for-the-debug-log-test",
}


async def test_debug_logging_prints_no_secret(tmp_path: Path) -> None:
    twilio = TwilioApiStandIn()
    call_sid = "CA" + secrets.token_hex(16)

    def end_call(turn: int):  # the agent hangs up after its first answer
        return ("end_call", {"reason": "done"}) if turn == 0 else None

    async with (
        LoopbackRealtimeServer(reply=lambda _: tone(600, 300), tool_call=end_call) as model,
        run_server(twilio.app) as twilio_url,
    ):
        env = {
            **SECRETS,
            "LOG_LEVEL": "debug",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_API_BASE_URL": twilio_url,
            "TWILIO_FROM_NUMBER": "+15550009999",
            "CALL_LOG_DIR": str(tmp_path / "calls"),
            "AUDIO_AHEAD_LIMIT": "0",
        }
        server = ServerProcess(env, tmp_path)
        try:
            await server.up()
            result = await simulate_call(
                server.base_url,
                fixture_audio("goforward.ulaw"),
                auth_token=AUTH_TOKEN,
                speed=4,
                call_sid=call_sid,
                # on the line until the agent's REST hang-up, however long a loaded machine
                # takes (at most 120 s of call time, 30 s of wall time at this speed; the
                # default 20 s, 5 s of wall time, ran out once in a CI run)
                ended=twilio.leaves(call_sid),
                max_tail_s=120,
            )
            await asyncio.to_thread(_outbound_call_and_metrics, server.base_url)
        finally:
            server.stop()
    output = server.output
    assert "DEBUG" in output  # debug logging was on
    # every line could be formatted (uvicorn's access lines need their arguments intact)
    assert "Logging error" not in output, output[output.find("Logging error") :][:1500]
    assert '"POST /incoming-call HTTP/1.1" 200' in output
    # the REST hang-up happened (if not: what the call's log says, which holds no secret)
    assert twilio.leaves(call_sid).is_set(), _call_events(tmp_path / "calls", call_sid)
    assert twilio.updates(call_sid)[-1].get("Status") == "completed"
    handshake = RequestValidator(AUTH_TOKEN).compute_signature(result.stream_url, {})
    for name, value in {**SECRETS, "handshake signature": handshake}.items():
        assert value not in output, f"{name} is in the server log"
    assert result.parameters["token"] not in output  # the call's stream token


def _outbound_call_and_metrics(base_url: str) -> None:
    request = urllib.request.Request(
        base_url + "/calls",
        data=json.dumps({"to": "+15551112222"}).encode(),
        headers={
            "Authorization": f"Bearer {SECRETS['DIAL_API_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    request = urllib.request.Request(
        base_url + "/metrics", headers={"Authorization": f"Bearer {SECRETS['METRICS_TOKEN']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _call_events(directory: Path, call_sid: str) -> str:
    """The call log's events in order (``call.end`` with its reason), for a failure message."""
    path = directory / f"{call_sid}.jsonl"
    if not path.exists():
        return "no call log"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ", ".join(
        r["event"] + (f" ({r.get('reason')})" if r["event"] == "call.end" else "") for r in records
    )
