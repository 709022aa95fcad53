"""OpenTelemetry traces: one per call, built from its call-log records (README "Deploy").

Off unless the standard OpenTelemetry variables name an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=
true`` or ``OTEL_TRACES_EXPORTER=none`` turn them off). Then spans go over OTLP/HTTP
(protobuf; no gRPC) in batches, with ``OTEL_SERVICE_NAME`` (default ``realtime-telephony``) and
every other ``OTEL_*`` variable the SDK reads (headers, timeouts, sampling). Off, nothing of
OpenTelemetry is imported and no call does any work for it.

A call's trace is made from the records its call log already writes (an observer of
:class:`~telephony.observability.call_log.CallLogs`), so the call path has no tracing code:

- ``call`` (the root, under the Voice webhook's HTTP span when the webhook came here): from
  the webhook (or the stream's start, or a SIP call's accept) to ``call.end``; attributes
  ``telephony.call_id`` (the CallSid or SIP call_id), ``telephony.instance``,
  ``twilio.stream_sid``, the end's ``telephony.end_reason`` and duration. Phone numbers are
  not copied (the call log masks them; a trace backend is one more place to keep them out of).
- ``model.connect`` (``model.connecting`` to ``model.connected``, or a pre-warmed session's
  adoption), ``turn`` (the caller's end of speech to the agent's first audio on the wire: the
  figure callers feel; ``telephony.turn_latency_ms``), ``greeting``, ``tool <name>``,
  ``transfer``, ``model.renewal`` and ``hangup`` (the hang-up's request to ``call.end``).
- Span events on ``call``: barge-in interruptions, model and protocol errors.

The trace id is written to the call log (a ``trace`` record) and shown on the console's call
page, so a call found in either is found in the other.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["CallTraces", "tracing_wanted"]

logger = logging.getLogger("telephony.tracing")

MAX_OPEN_CALLS = 10_000  # calls whose trace is open (a log that never wrote call.end is dropped)
MAX_OPEN_S = 6 * 3600.0  # and a trace open this long (a webhook whose stream never came) ends
SERVICE_NAME = "realtime-telephony"
_EVENTS = ("barge_in.interruption", "model.error", "protocol.error", "twilio.error")
_TRANSFER_ENDS = (
    "call.transfer",
    "transfer.error",
    "transfer.refused",
    "transfer.cancelled",
    "transfer.declined",
    "transfer.unclaimed",
)


def tracing_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is named and neither
    ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _ns(record: Mapping[str, Any], less_ms: float = 0.0) -> int:
    """A record's wall-clock time (``ts``, seconds), minus ``less_ms``, in nanoseconds."""
    return int((float(record["ts"]) - less_ms / 1000) * 1e9)


class _Call:
    """The open spans of one call's trace."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.began = time.monotonic()
        self.connect: Any = None
        self.tools: dict[str, list[Any]] = {}
        self.transfer: Any = None
        self.hangup: Any = None


class CallTraces:
    """One trace per call, from its call-log records.

    Args:
        provider: an OpenTelemetry ``TracerProvider``; None: one exporting over OTLP/HTTP as
            the ``OTEL_*`` variables say (:meth:`from_environment` is the usual way in).
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace

        self.provider = provider
        self._trace = trace
        self._tracer = provider.get_tracer("telephony")
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    @classmethod
    def from_environment(cls) -> CallTraces:
        """A batch exporter over OTLP/HTTP to the endpoint the ``OTEL_*`` variables name.

        Raises:
            ImportError: OpenTelemetry's SDK or its OTLP/HTTP exporter is not installed.
        """
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME}
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def instrument(self, app: Any) -> None:
        """FastAPI's own instrumentation on ``app`` (a span per HTTP request and WebSocket),
        with this provider; the Voice webhook's span becomes the parent of its call's."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls="healthz,readyz,metrics"
        )

    def begin(self, call_id: str) -> str | None:
        """The trace of ``call_id``, begun now (in the current span's trace, the webhook's
        HTTP request when there is one) unless it is open; returns its id (32 hex digits)
        when it was begun, None when it was open already."""
        if call_id in self._calls:
            return None
        root = self._tracer.start_span(
            "call", attributes={"telephony.call_id": call_id}, kind=self._trace.SpanKind.SERVER
        )
        self._calls[call_id] = _Call(root)
        too_old = time.monotonic() - MAX_OPEN_S
        while len(self._calls) > MAX_OPEN_CALLS or next(iter(self._calls.values())).began < too_old:
            _, dropped = self._calls.popitem(last=False)  # the oldest first
            dropped.root.set_attribute("telephony.end_reason", "unknown")
            dropped.root.end()
        return format(root.get_span_context().trace_id, "032x")

    def observe(self, record: dict[str, Any]) -> None:
        """A call-log record (:class:`~telephony.observability.call_log.CallLogs`'s
        observer): opens or ends the spans it marks. Never raises."""
        try:
            self._observe(record)
        except Exception:  # a trace is never worth a call
            logger.exception("tracing: record %s not traced", record.get("event"))

    def _span(self, name: str, parent: _Call, start_ns: int, **attributes: Any) -> Any:
        context = self._trace.set_span_in_context(parent.root)
        attrs = {k: v for k, v in attributes.items() if v is not None}
        return self._tracer.start_span(name, context, start_time=start_ns, attributes=attrs)

    def _observe(self, record: dict[str, Any]) -> None:
        call = self._calls.get(str(record.get("call_sid")))
        if call is None:
            return
        event, at = record.get("event"), _ns(record)
        root = call.root
        if event == "stream.start":
            root.set_attribute("twilio.stream_sid", str(record.get("stream_sid", "")))
        if "instance" in record:
            root.set_attribute("telephony.instance", str(record["instance"]))
        if event == "model.connecting":
            call.connect = self._span(
                "model.connect", call, at, **{"telephony.backend": record.get("backend")}
            )
        elif event in ("model.connected", "model.connect_failed"):
            connect_ms = float(record.get("connect_ms") or 0)
            span = call.connect or self._span(  # pre-warmed: opened at the webhook
                "model.connect",
                call,
                _ns(record, connect_ms),
                **{"telephony.prewarmed": bool(record.get("prewarmed"))},
            )
            span.set_attribute("telephony.connect_ms", connect_ms)
            if event == "model.connect_failed":
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            span.end(end_time=at)
            call.connect = None
        elif event == "latency":
            for key, name in (("turn_latency_ms", "turn"), ("greeting_ms", "greeting")):
                if record.get(key) is not None:
                    ms = float(record[key])
                    span = self._span(name, call, _ns(record, ms), **{f"telephony.{key}": ms})
                    span.end(end_time=at)
        elif event == "tool.start":
            name = str(record.get("tool"))
            span = self._span(f"tool {name}", call, at, **{"telephony.tool": name})
            call.tools.setdefault(name, []).append(span)
        elif event == "tool.end":
            started = call.tools.get(str(record.get("tool"))) or []
            if started:
                started.pop(0).end(end_time=at)
        elif event == "transfer.requested" and call.transfer is None:
            call.transfer = self._span("transfer", call, at)
        elif event in _TRANSFER_ENDS and call.transfer is not None:
            call.transfer.set_attribute("telephony.transfer_outcome", event)
            call.transfer.end(end_time=at)
            call.transfer = None
        elif event == "model.renewed":
            ms = float(record.get("switch_ms") or 0)
            self._span("model.renewal", call, _ns(record, ms)).end(end_time=at)
        elif event in ("call.hangup", "hangup.requested") and call.hangup is None:
            call.hangup = self._span("hangup", call, at, **{"telephony.via": record.get("via")})
        elif event in _EVENTS:
            fields = {k: str(v) for k, v in record.items() if k in ("why", "kind", "code")}
            root.add_event(str(event), fields, timestamp=at)
        elif event in ("call.end", "call.rejected"):
            self._end(call, record, at)

    def _end(self, call: _Call, record: dict[str, Any], at: int) -> None:
        self._calls.pop(str(record.get("call_sid")), None)
        tools = [span for spans in call.tools.values() for span in spans]
        for span in (call.connect, call.transfer, call.hangup, *tools):
            if span is not None:
                span.end(end_time=at)
        reason = record.get("reason") or ("busy" if record["event"] == "call.rejected" else "")
        call.root.set_attribute("telephony.end_reason", str(reason))
        if record.get("duration_s") is not None:
            call.root.set_attribute("telephony.duration_s", float(record["duration_s"]))
        call.root.end(end_time=at)

    def shutdown(self) -> None:
        """Export what is left (at the server's exit)."""
        self.provider.shutdown()
