"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from ..services import Services
from ..sip.ids import is_sip_call_id
from ..twilio.ids import is_call_sid

__all__ = ["ServicesDep", "get_services", "known_call_id"]


def get_services(connection: HTTPConnection) -> Services:
    """The app's :class:`~telephony.services.Services` (``app.state.services``), for HTTP
    requests and WebSockets alike."""
    services: Services = connection.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def known_call_id(sid: str, detail: str = "no such call") -> None:
    """404 unless ``sid`` is shaped as a Twilio CallSid or an OpenAI SIP call_id (so it can
    name neither a path outside the log directory nor anything else)."""
    if not (is_call_sid(sid) or is_sip_call_id(sid)):
        raise HTTPException(404, detail)
