"""The HTTP surface: thin FastAPI routers that validate, build what does the work, and hand over.

- :mod:`.twilio`: ``POST /incoming-call``, ``WS /media-stream``, ``POST /call-status``;
- :mod:`.calls`: ``POST /calls`` (outbound dialling);
- :mod:`.sip`: ``POST /openai/webhook``;
- :mod:`.ops`: ``GET /healthz``, ``/readyz``, ``/metrics``.

Shared services come from :func:`.deps.get_services`. Nothing below the routes imports them.
"""
