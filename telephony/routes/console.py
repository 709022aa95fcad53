"""The operator console: ``/console`` (off, 404, unless ``CONSOLE_TOKEN`` is set).

Sign in with the token (a form that sets an HttpOnly, SameSite=Strict cookie holding a keyed
hash of it, never the token; or ``Authorization: Bearer``); a wrong token gets 401, the list
without a session goes to the form, and everything else without one answers 401. Pages:

- ``GET /console``: calls in progress on every instance of the fleet (updated every second
  from ``/console/live.json``, each with a hang-up button) and ended calls, newest first,
  paginated, filtered by outcome and date, searched by CallSid or number (from
  :class:`telephony.console.CallIndex`);
- ``GET /console/calls/{sid}``: the timeline, the transcript, the per-call metrics, the events
  and the recording, whose player position is drawn on the timeline (click it to seek);
- ``POST /console/calls/{sid}/hangup``: the same path as ``POST /calls/{sid}/hangup``.

Numbers are masked (the last four digits shown) unless ``CONSOLE_SHOW_NUMBERS=true``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from ..console import CallRow, show_number
from ..observability.call_log import read_call_log, seconds_between
from ..observability.timeline import geometry, render_svg, transfer_line
from ..remote_control import CallNotFound, ControlUnavailable
from ..services import Services
from .deps import ServicesDep, known_call_id

__all__ = ["router"]

COOKIE = "console_session"
SESSION_S = 12 * 3600  # a sign-in lasts this long
PAGE_SIZE = 50
MAX_OFFSET = 10**9  # SQLite's integers stop at 2**63; no console pages that far
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent.parent / "console" / "templates"))
EVENTS_SHOWN = 400  # the events table shows the first ones (audio counters left out)
MODELS = {"local": "the embedded offline model", "openai": "OpenAI Realtime"}
QUIET_EVENTS = frozenset({"model.audio", "mark.sent", "mark.played", "audio.in", "latency"})

router = APIRouter(prefix="/console")


def _session_mac(token: str, issued: str) -> str:
    key = hmac.new(token.encode(), b"telephony-console-session", hashlib.sha256).digest()
    return hmac.new(key, issued.encode(), hashlib.sha256).hexdigest()


def _session_value(token: str, now: float | None = None) -> str:
    """A session cookie: when it was issued (Unix ms), and a keyed hash of that (never the
    token)."""
    issued = str(int(1000 * (time.time() if now is None else now)))
    return f"{issued}.{_session_mac(token, issued)}"


def _session_valid(cookie: str, token: str, signed_out_at: float) -> bool:
    """Issued by us, within :data:`SESSION_S`, and after the last sign-out (this instance's).
    Any text is safe here (a cookie may hold anything: it is compared as bytes)."""
    issued, _, mac = cookie.partition(".")
    if not issued.isascii() or not issued.isdigit() or len(issued) > 15:
        return False
    expected = _session_mac(token, issued)
    if not hmac.compare_digest(mac.encode(errors="replace"), expected.encode()):
        return False
    at = int(issued) / 1000
    return signed_out_at < at and time.time() - at < SESSION_S


def _enabled(services: ServicesDep) -> str:
    token = services.settings.console_token
    if token is None:
        raise HTTPException(404, "the console is off (CONSOLE_TOKEN is not set)")
    return token.get_secret_value()


def _signed_in(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    if given and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    signed_out_at = getattr(request.app.state, "console_signed_out_at", 0.0)
    return bool(cookie) and _session_valid(cookie, token, signed_out_at)


def console_user(request: Request, services: ServicesDep) -> None:
    """FastAPI dependency: 404 when the console is off, 401 unless signed in."""
    if not _signed_in(request, _enabled(services)):
        raise HTTPException(401, "sign in at /console/login")


SignedIn = Depends(console_user)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, services: ServicesDep) -> Response:
    _enabled(services)
    return TEMPLATES.TemplateResponse(request, "login.html", {"failed": False})


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    token = _enabled(services)
    form = await request.form(max_fields=5)
    given = form.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return TEMPLATES.TemplateResponse(request, "login.html", {"failed": True}, status_code=401)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="strict",
        path="/console",
        max_age=SESSION_S,
        secure=_behind_tls(request, services),
    )
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    """Sign out: the cookie is cleared, and every session issued before now is refused by this
    instance (a fleet's other instances refuse it once it expires: ``SESSION_S``)."""
    _enabled(services)
    if request.headers.get("x-console") != "1" and request.headers.get("origin") not in (
        None,
        f"{request.url.scheme}://{request.url.netloc}",
    ):
        raise HTTPException(403, "cross-site sign-out")
    request.app.state.console_signed_out_at = time.time()
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", secure=_behind_tls(request, services))
    return response


def _behind_tls(request: Request, services: Services) -> bool:
    """The browser reached us over https: directly, or through the TLS proxy ``PUBLIC_URL``
    names (the request itself then arrives as http)."""
    public = services.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


@router.get("", response_class=HTMLResponse)
async def calls(
    request: Request,
    services: ServicesDep,
    outcome: str = "",
    since: str = "",
    until: str = "",
    q: str = "",
    offset: int = 0,
) -> Response:
    token = _enabled(services)
    if not _signed_in(request, token):
        return RedirectResponse("/console/login", status_code=303)
    index = services.console
    assert index is not None
    offset = min(max(0, offset), MAX_OFFSET)
    rows, total = await asyncio.to_thread(
        index.page,
        offset,
        PAGE_SIZE,
        outcome or None,
        _day(since),
        _day(until, 1),
        q.strip()[:64] or None,
        whole_numbers=not services.settings.console_show_numbers,
    )
    query = {"outcome": outcome, "since": since, "until": until, "q": q}

    def url(at: int) -> str:
        parts = "&".join(f"{k}={v}" for k, v in {**query, "offset": at}.items() if v != "")
        return f"/console?{parts}"

    context = {
        "targets": sorted(services.features.transfer_targets),
        "rows": [_display(row, services) for row in rows],
        "total": total,
        "offset": offset,
        "outcomes": index.outcomes(),
        "prev_url": url(max(0, offset - PAGE_SIZE)),
        "next_url": url(offset + PAGE_SIZE),
        **query,
    }
    return TEMPLATES.TemplateResponse(request, "calls.html", context)


@router.get("/live.json", dependencies=[SignedIn])
async def live(services: ServicesDep) -> list[dict[str, Any]]:
    """Calls in progress on every instance of the fleet (this one's alone without Redis)."""
    return await services.control.live()


@router.post("/calls/{sid}/hangup", dependencies=[SignedIn])
async def hang_up(sid: str, request: Request, services: ServicesDep) -> dict[str, str | None]:
    if request.headers.get("x-console") != "1":  # a plain cross-site form cannot set it
        raise HTTPException(403, "missing X-Console header")
    known_call_id(sid)
    try:
        result = await services.control.hang_up(sid, "console")
    except CallNotFound:
        raise HTTPException(404, "no such live call") from None
    except ControlUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    return {"call_sid": sid, "via": result.via}


class ConsoleTransfer(BaseModel):
    """Body of ``POST /console/calls/{sid}/transfer``: a name of ``TRANSFER_TARGETS``."""

    destination: str = Field(max_length=80)


@router.post("/calls/{sid}/transfer", dependencies=[SignedIn])
async def transfer(
    sid: str, body: ConsoleTransfer, request: Request, services: ServicesDep
) -> dict[str, str | None]:
    """Transfer a live call (warm where ``TRANSFER_WARM`` names the destination: the agent
    tells the caller, then briefs the person, who accepts or declines)."""
    if request.headers.get("x-console") != "1":  # a plain cross-site form cannot set it
        raise HTTPException(403, "missing X-Console header")
    known_call_id(sid)
    if body.destination not in services.features.transfer_targets:
        raise HTTPException(422, f"{body.destination!r} is not one of TRANSFER_TARGETS")
    try:
        result = await services.control.transfer(sid, body.destination)
    except CallNotFound:
        raise HTTPException(404, "no such live call") from None
    except ControlUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    return {"call_sid": sid, "via": result.via}


@router.get("/calls/{sid}", response_class=HTMLResponse, dependencies=[SignedIn])
async def call_page(sid: str, request: Request, services: ServicesDep) -> Response:
    known_call_id(sid)
    path = services.settings.call_log_dir / f"{sid}.jsonl"
    if not path.exists():
        raise HTTPException(404, "no log for that call")
    # off the event loop: a long call's log is megabytes, and live calls' audio runs on the loop
    context = await asyncio.to_thread(_call_context, sid, path, services)
    return TEMPLATES.TemplateResponse(request, "call.html", context)


def _call_context(sid: str, path: Path, services: Services) -> dict[str, Any]:
    """The call page's content from the call's log (in a worker thread)."""
    records = read_call_log(path)
    if not records:
        raise HTTPException(404, "empty log")
    left, scale = geometry(records)
    origin = next(
        (r for r in records if r["event"] in ("stream.start", "sip.incoming")), records[0]
    )
    end = next((r for r in reversed(records) if r["event"] == "call.end"), {})
    model = next((r.get("backend") for r in records if r["event"] == "model.connecting"), None)
    kind = "simulated · " if end.get("simulated") else ""
    return {
        "call_sid": sid,
        "svg": render_svg(_masked_records(records, services)),
        "left": left,
        "scale": scale,
        "recording": (services.settings.call_log_dir / f"{sid}.wav").exists(),
        "transcript": [
            {"who": "caller" if r["event"] == "transcript.caller" else "agent", "text": r["text"]}
            for r in records
            if r["event"] in ("transcript.caller", "transcript.agent") and r.get("text")
        ],
        "metrics": _metrics(end),
        "events": [
            {
                "t": round(seconds_between(origin, r), 3),
                "event": r["event"],
                "details": _details(r, services),
            }
            for r in records
            if r["event"] not in QUIET_EVENTS
        ][:EVENTS_SHOWN],
        "summary": f"{kind}{end.get('reason', 'in progress')} · {end.get('duration_s', '?')} s"
        + (f" · model: {MODELS.get(model, model)}" if model else ""),
        "transfer": transfer_line(records),
        # OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT): the call's trace, one per instance
        "trace_ids": list(dict.fromkeys(r["trace_id"] for r in records if r["event"] == "trace")),
    }


@router.get("/calls/{sid}/recording.wav", dependencies=[SignedIn])
async def recording(sid: str, services: ServicesDep) -> FileResponse:
    known_call_id(sid)
    path = services.settings.call_log_dir / f"{sid}.wav"
    if not path.exists():
        raise HTTPException(404, "no recording for that call")
    return FileResponse(path, media_type="audio/wav")


def _day(text: str, plus_days: int = 0) -> float | None:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day.timestamp() + plus_days * 86400


def _number(number: str | None, services: Services) -> str:
    return show_number(number, services.settings.console_show_numbers)


def _display(row: CallRow, services: Services) -> dict[str, Any]:
    started = datetime.fromtimestamp(row.started, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "call_sid": row.call_sid,
        "started_text": started,
        "direction": row.direction or "",
        "caller": _number(row.caller, services),
        "callee": _number(row.callee, services),
        "duration": f"{row.duration_s:.1f} s" if row.duration_s is not None else "",
        "reason": row.reason or "",
        "latency": f"{row.latency_p50_ms:.0f} ms" if row.latency_p50_ms is not None else "",
        "interruptions": row.interruptions if row.interruptions is not None else "",
        "cost": f"${row.cost_usd:.4f}" if row.cost_usd else "",
        "backend": row.backend or "",
    }


NUMBER_FIELDS = ("from", "to")
HIDDEN_WHEN_MASKED = ("sip_headers",)  # SIP From/To/P-Asserted-Identity carry whole numbers


def _shown(key: str, value: Any, services: Services) -> Any:
    if services.settings.console_show_numbers:
        return value
    if key in NUMBER_FIELDS:
        return _number(value, services)
    return "•••" if key in HIDDEN_WHEN_MASKED else value


def _masked_records(records: list[dict[str, Any]], services: Services) -> list[dict[str, Any]]:
    if services.settings.console_show_numbers:
        return records
    return [{k: _shown(k, v, services) for k, v in r.items()} for r in records]


def _details(record: dict[str, Any], services: Services) -> str:
    shown = {
        k: _shown(k, v, services)
        for k, v in record.items()
        if k not in ("ts", "mono", "call_sid", "event", "instance", "custom_parameters")
    }
    return json.dumps(shown, ensure_ascii=False, default=str)[:300]


def _metrics(end: dict[str, Any]) -> list[tuple[str, Any]]:
    metrics = end.get("metrics") or {}
    keys = ("greeting_ms", "turn_latency_p50_ms", "model_to_wire_p50_ms", "barge_in_ms")
    rows = [(k, metrics.get(k)) for k in keys if metrics.get(k) is not None]
    for k in ("backend", "session_ids", "frames_in", "frames_out", "interruptions", "clears",
              "renewals"):  # fmt: skip
        if k in end:
            rows.append((k, end[k]))
    if end.get("cost_usd"):
        rows.append(("cost_usd", end["cost_usd"]))
    if end.get("suppressed_interruptions"):
        rows.append(("suppressed_interruptions", end["suppressed_interruptions"]))
    return rows
