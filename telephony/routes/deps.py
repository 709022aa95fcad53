"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..services import Services

__all__ = ["ServicesDep", "get_services"]


def get_services(connection: HTTPConnection) -> Services:
    """The app's :class:`~telephony.services.Services` (``app.state.services``), for HTTP
    requests and WebSockets alike."""
    services: Services = connection.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
