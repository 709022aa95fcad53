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

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ..console import CallRow, show_number
from ..observability.call_log import read_call_log
from ..observability.timeline import geometry, render_svg
from ..remote_control import CallNotFound, ControlUnavailable
from ..services import Services
from .deps import ServicesDep, known_call_id

__all__ = ["router"]

COOKIE = "console_session"
PAGE_SIZE = 50
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent.parent / "console" / "templates"))
EVENTS_SHOWN = 400  # the events table shows the first ones (audio counters left out)
MODELS = {"local": "the embedded offline model", "openai": "OpenAI Realtime"}
QUIET_EVENTS = frozenset({"model.audio", "mark.sent", "mark.played", "audio.in", "latency"})

router = APIRouter(prefix="/console")


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"telephony-console-session", hashlib.sha256).hexdigest()


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
    return bool(cookie) and hmac.compare_digest(cookie, _session_value(token))


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
        secure=request.url.scheme == "https",
    )
    return response


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
    offset = max(0, offset)
    rows, total = index.page(
        offset, PAGE_SIZE, outcome or None, _day(since), _day(until, 1), q.strip()[:64] or None
    )
    query = {"outcome": outcome, "since": since, "until": until, "q": q}

    def url(at: int) -> str:
        parts = "&".join(f"{k}={v}" for k, v in {**query, "offset": at}.items() if v != "")
        return f"/console?{parts}"

    context = {
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


@router.get("/calls/{sid}", response_class=HTMLResponse, dependencies=[SignedIn])
async def call_page(sid: str, request: Request, services: ServicesDep) -> Response:
    known_call_id(sid)
    path = services.settings.call_log_dir / f"{sid}.jsonl"
    if not path.exists():
        raise HTTPException(404, "no log for that call")
    records = read_call_log(path)
    if not records:
        raise HTTPException(404, "empty log")
    left, scale = geometry(records)
    origin = next(
        (r["ts"] for r in records if r["event"] in ("stream.start", "sip.incoming")),
        records[0]["ts"],
    )
    end = next((r for r in reversed(records) if r["event"] == "call.end"), {})
    model = next((r.get("backend") for r in records if r["event"] == "model.connecting"), None)
    kind = "simulated · " if end.get("simulated") else ""
    context = {
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
                "t": round(r["ts"] - origin, 3),
                "event": r["event"],
                "details": _details(r, services),
            }
            for r in records
            if r["event"] not in QUIET_EVENTS
        ][:EVENTS_SHOWN],
        "summary": f"{kind}{end.get('reason', 'in progress')} · {end.get('duration_s', '?')} s"
        + (f" · model: {MODELS.get(model, model)}" if model else ""),
    }
    return TEMPLATES.TemplateResponse(request, "call.html", context)


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
    }


NUMBER_FIELDS = ("from", "to")


def _masked_records(records: list[dict[str, Any]], services: Services) -> list[dict[str, Any]]:
    if services.settings.console_show_numbers:
        return records
    return [
        {k: (_number(v, services) if k in NUMBER_FIELDS else v) for k, v in r.items()}
        for r in records
    ]


def _details(record: dict[str, Any], services: Services) -> str:
    shown = {
        k: (_number(v, services) if k in NUMBER_FIELDS else v)
        for k, v in record.items()
        if k not in ("ts", "call_sid", "event", "instance", "custom_parameters")
    }
    return json.dumps(shown, ensure_ascii=False, default=str)[:300]


def _metrics(end: dict[str, Any]) -> list[tuple[str, Any]]:
    metrics = end.get("metrics") or {}
    keys = ("greeting_ms", "turn_latency_p50_ms", "model_to_wire_p50_ms", "barge_in_ms")
    rows = [(k, metrics.get(k)) for k in keys if metrics.get(k) is not None]
    for k in ("frames_in", "frames_out", "interruptions", "clears", "renewals"):
        if k in end:
            rows.append((k, end[k]))
    if end.get("cost_usd"):
        rows.append(("cost_usd", end["cost_usd"]))
    if end.get("suppressed_interruptions"):
        rows.append(("suppressed_interruptions", end["suppressed_interruptions"]))
    return rows
