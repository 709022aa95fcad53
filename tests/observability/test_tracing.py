"""OpenTelemetry: a call's trace, exported by a real ``server.py`` over OTLP/HTTP to a real
receiver (decoding OTLP's protobuf ``ExportTraceServiceRequest``); off unless asked."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from helpers import AUTH_TOKEN, events, final_log, fixture_audio, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from processes import ServerProcess

from telephony.observability.call_log import read_call_log
from telephony.observability.tracing import tracing_wanted
from telephony.simulate import simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

CONSOLE_TOKEN = "console-token-for-the-trace-test-0123"


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: ``POST /v1/traces`` (protobuf)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                receiver.take(request, self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def take(self, request: ExportTraceServiceRequest, path: str) -> None:
        assert path == "/v1/traces"
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            self.resources.append(resource)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "start_ns": span.start_time_unix_nano,
                            "end_ns": span.end_time_unix_nano,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )

    def close(self) -> None:
        self._server.shutdown()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


async def test_a_calls_trace_reaches_an_otlp_receiver(tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    try:
        async with LoopbackRealtimeServer(reply=lambda _: tone(600, 400)) as model:
            env = {
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "OPENAI_API_KEY": "sk-test-not-a-real-key",
                "OPENAI_REALTIME_URL": model.url,
                "CALL_LOG_DIR": str(tmp_path / "calls"),
                "AUDIO_AHEAD_LIMIT": "0",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_SERVICE_NAME": "telephony-under-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "CONSOLE_TOKEN": CONSOLE_TOKEN,
            }
            server = ServerProcess(env, tmp_path)
            try:
                await server.up()
                result = await simulate_call(
                    server.base_url,
                    fixture_audio("goforward.ulaw"),
                    auth_token=AUTH_TOKEN,
                    speed=4,
                    min_turns=2,  # the greeting, then the answer (the "turn" span's end)
                )
                await wait_for(
                    lambda: any(s["name"] == "call" for s in receiver.spans),
                    what="the call's root span at the receiver",
                )
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    await http.post("/console/login", data={"token": CONSOLE_TOKEN})
                    page = (await http.get(f"/console/calls/{result.call_sid}")).text
            finally:
                server.stop()
    finally:
        receiver.close()
    log = read_call_log(tmp_path / "calls" / f"{result.call_sid}.jsonl")
    (trace,) = events(log, "trace")
    assert f"<code>{trace['trace_id']}</code>" in page  # the console's call page shows it
    spans = [s for s in receiver.spans if s["trace_id"] == trace["trace_id"]]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (root,) = by_name["call"]
    assert root["attributes"]["telephony.call_id"] == result.call_sid
    assert root["attributes"]["telephony.end_reason"] == events(log, "call.end")[0]["reason"]
    # the Voice webhook's HTTP span (FastAPI's instrumentation) is the call's parent
    (webhook,) = [s for s in spans if s["span_id"] == root["parent"]]
    assert webhook["name"] == "POST /incoming-call"
    children = {s["name"] for s in spans if s["parent"] == root["span_id"]}
    assert {"model.connect", "greeting", "turn"} <= children, children
    # each turn spans the caller's end of speech to the agent's first audio: its latency
    latencies = [r["turn_latency_ms"] for r in events(log, "latency") if "turn_latency_ms" in r]
    turns = sorted(by_name["turn"], key=lambda s: s["start_ns"])
    assert [t["attributes"]["telephony.turn_latency_ms"] for t in turns] == latencies
    for turn, ms in zip(turns, latencies, strict=True):
        assert abs((turn["end_ns"] - turn["start_ns"]) / 1e6 - ms) < 0.01
        assert root["start_ns"] <= turn["start_ns"] <= turn["end_ns"] <= root["end_ns"]
    assert any(r.get("service.name") == "telephony-under-test" for r in receiver.resources)
    # no phone number leaves in a span
    for span in spans:
        for value in span["attributes"].values():
            assert "+1555" not in str(value), span


def test_tracing_is_off_unless_an_otlp_endpoint_is_named() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing_wanted({})
    assert tracing_wanted(endpoint)
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_wanted({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted({**endpoint, "OTEL_TRACES_EXPORTER": "none"})


async def test_with_tracing_off_no_call_log_has_a_trace(live_server) -> None:
    async with live_server() as srv:
        assert srv.services.logs.traces is None
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=4)
        log = await final_log(srv, result.call_sid)
    assert events(log, "call.end") and not events(log, "trace")


def test_a_trace_whose_call_never_ended_is_closed_after_a_while() -> None:
    """A webhook answered and no stream came (the caller hung up while it rang): its trace
    ends, marked ``unknown``, once it has been open ``MAX_OPEN_S``, not at the process's end."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from telephony.observability import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces = tracing.CallTraces(provider)
    assert traces.begin("CA" + "1" * 32) is not None
    assert traces.begin("CA" + "1" * 32) is None  # open already: the same trace
    traces._calls["CA" + "1" * 32].began -= tracing.MAX_OPEN_S + 1
    traces.begin("CA" + "2" * 32)
    (ended,) = exporter.get_finished_spans()
    assert ended.attributes["telephony.call_id"] == "CA" + "1" * 32
    assert ended.attributes["telephony.end_reason"] == "unknown"
    traces.observe({"event": "call.end", "call_sid": "CA" + "2" * 32, "ts": 1.0, "reason": "done"})
    assert [s.attributes["telephony.end_reason"] for s in exporter.get_finished_spans()] == [
        "unknown",
        "done",
    ]
