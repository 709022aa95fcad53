"""A newcomer's mistakes each say how to fix them: ``server.py --check`` against Twilio's and
OpenAI's stand-ins (accepted, refused, unreachable), a port in use found before the models
load, misspelled variables, and ``server.py --help`` that starts nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import ACCOUNT_SID, free_port, run_server

from telephony.testing import OpenAIApiStandIn, TwilioApiStandIn

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "twilio-auth-token-0123456789"
KEY = "sk-good-key-0123456789abcdef"


def server(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python server.py ARGS`` with only ``env`` (and PATH) as its environment."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def check(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    result = await asyncio.to_thread(server, ["--check"], env, tmp_path)
    return result.returncode, result.stdout + result.stderr


async def test_check_says_whether_twilio_and_openai_accept_the_credentials(tmp_path) -> None:
    twilio = TwilioApiStandIn(auth_token=TOKEN)
    openai = OpenAIApiStandIn(api_key=KEY)
    async with run_server(twilio.app) as twilio_url, run_server(openai.app) as openai_url:
        env = {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "PUBLIC_URL": "https://abc.ngrok.app",
            "TWILIO_API_BASE_URL": twilio_url,
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": f"{openai_url}/v1",
        }
        status, out = await check(env, tmp_path)
        assert status == 0, out
        assert "ok Twilio: account AC0000…0000 accepts the auth token" in out
        assert "ok OpenAI: the key is accepted and gpt-realtime-2.1 is available" in out
        # on GPT-Live both of its models are checked: the voice model and the delegate
        status, out = await check({**env, "REALTIME_BACKEND": "live"}, tmp_path)
        assert status == 0, out
        assert "accepted and gpt-live-1.1 and gpt-5.4-mini are available" in out
        unknown = {**env, "REALTIME_BACKEND": "live", "OPENAI_LIVE_DELEGATE_MODEL": "gpt-9"}
        status, out = await check(unknown, tmp_path)
        assert status == 1 and "gpt-9 is not available" in out
        assert "(OPENAI_LIVE_DELEGATE_MODEL)" in out
        wrong = {**env, "TWILIO_AUTH_TOKEN": "x" * 32, "OPENAI_API_KEY": "sk-wrong-key-abcdefghij"}
        status, out = await check(wrong, tmp_path)
    assert status == 1
    assert "!! Twilio: account AC0000…0000 refused the auth token (HTTP 401)" in out
    assert "!! OpenAI: the key is refused (HTTP 401): Incorrect API key provided: sk-…" in out
    assert "wrong-key" not in out and "x" * 32 not in out  # no secret is printed, even masked


async def test_check_names_the_host_it_cannot_reach_and_what_is_missing(tmp_path) -> None:
    env = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_URL": "https://abc.ngrok.app",
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": "http://no-such-host.invalid/v1",
        "TWILLIO_FROM_NUMBER": "+15550001111",
    }
    status, out = await check(env, tmp_path)
    assert status == 1
    assert "!! OpenAI: cannot reach no-such-host.invalid" in out
    assert "!! Twilio: TWILIO_ACCOUNT_SID is not set" in out and "hang-up, transfer" in out
    assert "!! TWILLIO_FROM_NUMBER is not a setting of this server" in out
    assert "did you mean TWILIO_FROM_NUMBER?" in out


async def test_a_port_in_use_is_said_before_the_models_load(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(server, [], {"PORT": str(port)}, tmp_path)
    assert result.returncode == 2
    assert f"PORT {port} on 127.0.0.1 is in use" in result.stderr and "set PORT" in result.stderr
    assert "offline voice model loaded" not in result.stderr + result.stdout  # nothing loaded


async def test_help_and_secret_start_nothing(tmp_path) -> None:
    result = await asyncio.to_thread(server, ["--help"], {}, tmp_path)
    assert result.returncode == 0 and "TWILIO_AUTH_TOKEN" in result.stdout
    assert "--check" in result.stdout and not (tmp_path / "calls").exists()
    first = await asyncio.to_thread(server, ["--secret"], {}, tmp_path)
    second = await asyncio.to_thread(server, ["--secret"], {}, tmp_path)
    assert len(first.stdout.strip()) >= 40 and first.stdout != second.stdout


async def test_a_public_url_with_the_webhook_path_pasted_in_is_refused(tmp_path) -> None:
    url = "https://abc.ngrok.app/incoming-call"
    result = await asyncio.to_thread(server, [], {"PUBLIC_URL": url}, tmp_path)
    assert result.returncode == 2
    assert "PUBLIC_URL: must be the base URL without a path: https://abc.ngrok.app" in (
        result.stderr
    )
