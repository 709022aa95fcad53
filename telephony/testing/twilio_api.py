"""A loopback stand-in for the part of Twilio's REST API we call, with its real HTTP shape.

Serve :attr:`TwilioApiStandIn.app` on 127.0.0.1 and point the twilio client at it
(``TWILIO_API_BASE_URL``). It records every request; calls listed in :attr:`gone` answer
404 with Twilio error 20404 ("not found"), as a call that already ended does.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["ApiRequest", "TwilioApiStandIn"]


@dataclass
class ApiRequest:
    method: str
    path: str
    form: dict[str, str]
    authorization: str | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class TwilioApiStandIn:
    requests: list[ApiRequest] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    created: list[str] = field(default_factory=list)  # CallSids of calls it "placed"
    auth_token: str | None = None  # checked by the account resource (None: any)
    _left: dict[str, asyncio.Event] = field(default_factory=dict)

    def leaves(self, call_sid: str) -> asyncio.Event:
        """Set once an update moves ``call_sid`` off its TwiML or ends it (new TwiML, or a
        ``Status``): Twilio then ends the call's media stream, as a simulated leg should."""
        return self._left.setdefault(call_sid, asyncio.Event())

    def updates(self, call_sid: str) -> list[dict[str, str]]:
        """The forms of the updates of ``call_sid``, in order."""
        suffix = f"/Calls/{call_sid}.json"
        return [r.form for r in self.requests if r.path.endswith(suffix)]

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/2010-04-01/Accounts/{account_sid}.json")
        async def account(account_sid: str, request: Request) -> Any:
            sent = request.headers.get("authorization", "")
            expected = (
                "Basic " + base64.b64encode(f"{account_sid}:{self.auth_token}".encode()).decode()
            )
            if self.auth_token is not None and sent != expected:
                return JSONResponse(
                    {"code": 20003, "message": "Authenticate", "status": 401}, status_code=401
                )
            return {"sid": account_sid, "status": "active", "type": "Full"}

        @app.post("/2010-04-01/Accounts/{account_sid}/Calls.json")
        async def create_call(account_sid: str, request: Request) -> Any:
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            form["StatusCallbackEvent"] = " ".join(
                v
                for v in (await request.form()).getlist("StatusCallbackEvent")
                if isinstance(v, str)
            )
            self.requests.append(
                ApiRequest("POST", request.url.path, form, request.headers.get("authorization"))
            )
            call_sid = "CA" + secrets.token_hex(16)
            self.created.append(call_sid)
            return JSONResponse(
                {
                    "sid": call_sid,
                    "account_sid": account_sid,
                    "status": "queued",
                    "to": form.get("To"),
                    "from": form.get("From"),
                },
                status_code=201,
            )

        @app.post("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json")
        async def update_call(account_sid: str, call_sid: str, request: Request) -> Any:
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            self.requests.append(
                ApiRequest("POST", request.url.path, form, request.headers.get("authorization"))
            )
            if call_sid in self.gone:
                return JSONResponse(
                    {
                        "code": 20404,
                        "message": f"The requested resource {request.url.path} was not found",
                        "more_info": "https://www.twilio.com/docs/errors/20404",
                        "status": 404,
                    },
                    status_code=404,
                )
            status = form.get("Status", "in-progress")
            if "Twiml" in form or "Url" in form or "Status" in form:
                self.leaves(call_sid).set()
            return {"sid": call_sid, "account_sid": account_sid, "status": status}

        return app
