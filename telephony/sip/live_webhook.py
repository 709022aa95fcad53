"""``live.transport.incoming`` on the SIP path (GPT-Live, ``REALTIME_BACKEND=live``): verify,
claim once fleet-wide, admit, accept, run (see :mod:`.live`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from openai import NotFoundError
from openai.types.webhooks import LiveTransportIncomingWebhookEvent

from ..agent.tools import CallContext
from ..observability.call_log import describe_error
from .ids import is_live_session_id

__all__ = ["live_incoming"]

logger = logging.getLogger("telephony.sip")
BUSY_HERE = 486


async def live_incoming(
    calls: Any, event: LiveTransportIncomingWebhookEvent, headers: Mapping[str, str]
) -> tuple[int, dict[str, str]]:
    """One ``live.transport.incoming`` delivery to :class:`~.webhook.SipCalls` (``calls``),
    whose signature was verified; returns ``(HTTP status, JSON body)``. Claimed fleet-wide by
    its webhook id, its ``session_id`` and its SIP ``Call-ID`` (the call's other webhook,
    ``realtime.call.incoming``, carries the same header), so one instance accepts it once."""
    session_id = getattr(event.data, "session_id", None)
    if not is_live_session_id(session_id) or getattr(event.data, "type", "sip") != "sip":
        return 200, {"status": "ignored: not a SIP session"}
    assert isinstance(session_id, str)
    untrusted = calls.untrusted
    try:
        sip_headers = {untrusted(h.name, 64): untrusted(h.value) for h in event.data.sip_headers}
    except (AttributeError, TypeError):
        return 400, {"error": "malformed webhook event"}
    keys = [f"sip:webhook:{headers.get('webhook-id', event.id)}", f"sip:live:{session_id}"]
    sip_call_id = next((v for k, v in sip_headers.items() if k.lower() == "call-id"), None)
    if sip_call_id:
        keys.append(f"sip:callid:{sip_call_id[:128]}")
    if await calls._duplicate(*keys):
        logger.info("SIP call %s: duplicate delivery ignored", session_id)
        return 200, {"status": "duplicate"}
    live = calls.live
    admission = await calls._registry.admit_sip(session_id)
    if admission.reason:
        with calls._logs.open(session_id, observe=False) as log:
            log.write("call.rejected", reason=admission.reason, sip_status=BUSY_HERE)
        with contextlib.suppress(Exception):
            await live.client.live.sessions.reject(session_id, status_code=BUSY_HERE)
        return 200, {"status": "rejected"}
    try:
        plan = await live.plan(CallContext(session_id), [])
        config = {k: v for k, v in plan.config.items() if k != "audio"}  # SIP negotiates it
        config["audio"] = {"output": plan.config["audio"]["output"]}
        await live.client.live.sessions.accept(session_id, session={"type": "live", **config})
    except Exception as exc:
        gone = isinstance(exc, NotFoundError)
        with calls._logs.open(session_id, observe=False) as log:
            error = "404: the caller already hung up" if gone else describe_error(exc)
            log.write("call.accept_failed", error=error, backend="live")
        await calls._registry.release(session_id)
        await calls._forget(*keys)  # a redelivery may try again
        return 200, {"status": "caller gone" if gone else "accept failed"}
    extra: dict[str, Any] = {"degraded": True} if admission.degraded else {}
    extra["sip_media_security"] = getattr(event.data, "sip_media_security", None)
    calls._start(session_id, sip_headers, extra, live=True)
    return 200, {"status": "accepted"}
