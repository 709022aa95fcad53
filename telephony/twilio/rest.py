"""Changing a live call through Twilio's REST API (the twilio package's ``Client``).

Used to end a call with a spoken apology when the model fails, to hang up, to transfer, and to
place outbound calls. The client's blocking HTTP calls run in a worker thread.
``api_base_url`` points it at a local stand-in in tests; in production it is Twilio's
``https://api.twilio.com``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .twiml import say_and_hang_up_twiml

__all__ = ["TwilioCalls"]

logger = logging.getLogger("telephony.twilio.rest")

TWILIO_API = "https://api.twilio.com"
CALL_NOT_FOUND = 20404  # the call has already ended


class _RebasedHttpClient(TwilioHttpClient):
    """Sends the client's requests to another base URL (a loopback stand-in in tests)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self._base = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API):
            url = self._base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioCalls:
    """Live-call updates for one Twilio account.

    Args:
        account_sid: ``AC…``.
        auth_token: the account's auth token (never logged).
        api_base_url: override of ``https://api.twilio.com`` (tests).
    """

    def __init__(self, account_sid: str, auth_token: str, api_base_url: str | None = None) -> None:
        http_client = _RebasedHttpClient(api_base_url) if api_base_url else None
        self._client = Client(account_sid, auth_token, http_client=http_client)

    async def update_twiml(self, call_sid: str, twiml: str) -> bool:
        """Replace the live call's TwiML (this ends its media stream).

        Returns False when the call has already ended (Twilio error 20404); raises
        ``TwilioRestException`` for other API errors.
        """

        def update() -> None:
            self._client.calls(call_sid).update(twiml=twiml)

        return await self._update(update, call_sid)

    async def _update(self, update: Callable[[], None], call_sid: str) -> bool:
        try:
            await asyncio.to_thread(update)
        except TwilioRestException as exc:
            if exc.code == CALL_NOT_FOUND or exc.status == 404:
                logger.info("call %s already ended (20404)", call_sid)
                return False
            raise
        return True

    async def create_call(
        self,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        status_events: list[str],
        amd_callback: str | None = None,
        timeout_s: int | None = None,
    ) -> str:
        """Place an outbound call whose TwiML comes from ``url``; returns its CallSid. With
        ``amd_callback``, Twilio's answering machine detection runs asynchronously
        (``MachineDetection=DetectMessageEnd``, ``AsyncAmd``): the call connects at once and
        the result (``AnsweredBy``) is posted to ``amd_callback`` once known, after the
        greeting and beep for a machine. ``timeout_s``: how long it rings before Twilio gives
        up (``Timeout``; status ``no-answer``); None: Twilio's default, 60 s.

        Raises ``TwilioRestException`` when Twilio refuses it.
        """
        amd: dict[str, str] = {}
        if amd_callback is not None:
            amd = {
                "machine_detection": "DetectMessageEnd",
                "async_amd": "true",
                "async_amd_status_callback": amd_callback,
                "async_amd_status_callback_method": "POST",
            }

        def create() -> str:
            call = self._client.calls.create(
                to=to,
                from_=from_,
                url=url,
                method="POST",
                status_callback=status_callback,
                status_callback_event=status_events,
                status_callback_method="POST",
                **({"timeout": timeout_s} if timeout_s else {}),
                **amd,
            )
            return str(call.sid)

        return await asyncio.to_thread(create)

    async def hang_up(self, call_sid: str) -> bool:
        """End the live call (``status=completed``). False if it had already ended (20404)."""

        def update() -> None:
            self._client.calls(call_sid).update(status="completed")

        return await self._update(update, call_sid)

    async def say_and_hang_up(self, call_sid: str, text: str) -> bool:
        """Speak ``text`` to the caller, then hang up. False if the call had already ended."""
        return await self.update_twiml(call_sid, say_and_hang_up_twiml(text))
