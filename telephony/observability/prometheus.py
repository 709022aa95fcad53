"""Service metrics for Prometheus (``GET /metrics``, prometheus-client's exposition format).

Fed by call-log records as they are written (:meth:`ServiceMetrics.observe`, a ``CallLog``
observer) and by per-frame timings from the bridge (:meth:`ServiceMetrics.frame`), so the call
paths know nothing of Prometheus. One registry per app (tests run several apps in a process).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CALL_OUTCOMES", "CONTENT_TYPE_LATEST", "ServiceMetrics", "outcome"]

# label values come from this list only (a call's end reason can carry caller-chosen text)
CALL_OUTCOMES = frozenset(
    {
        "caller_hangup",
        "agent_hangup",
        "operator_hangup",
        "voicemail",
        "fax",
        "amd_unknown",
        "transferred",
        "twilio_disconnected",
        "model_ended",
        "model_error",
        "model_send_failed",
        "model_connect_failed",
        "idle_timeout",
        "max_duration",
        "server_shutdown",
        "no_start",
        "twilio_closed_before_start",
        "internal_error",
        "protocol_abuse",
        "audio_abuse",
        "call_ended",
        "ended_by_us",
    }
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
FRAME_BUCKETS = (10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3)


class ServiceMetrics:
    """The service's Prometheus metrics, one registry per app.

    Args:
        active_calls: calls in progress on this instance.
        redis_up: 1 when the fleet's Redis answered at the last contact, 0 when not; None when
            there is no fleet (the gauge is then absent).
        fleet_active: calls holding a fleet slot, from the last heartbeat (None: unknown).
    """

    def __init__(
        self,
        active_calls: Callable[[], int],
        redis_up: Callable[[], bool] | None = None,
        fleet_active: Callable[[], int | None] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("telephony_active_calls", "Calls in progress (both paths)", registry=r).set_function(
            active_calls
        )
        if redis_up is not None:
            Gauge(
                "telephony_redis_up", "Fleet Redis reachable (1) or not (0)", registry=r
            ).set_function(lambda: float(redis_up()))
        if fleet_active is not None:
            Gauge(
                "telephony_fleet_active_calls",
                "Calls holding a fleet slot (NaN: unknown)",
                registry=r,
            ).set_function(lambda: float("nan") if (n := fleet_active()) is None else float(n))
        self.degraded = Counter(
            "telephony_degraded_admissions",
            "Admissions decided without the fleet state (Redis down), by step",
            ["step"],
            registry=r,
        )
        self.calls = Counter("telephony_calls", "Calls ended, by outcome", ["outcome"], registry=r)
        self.turn_latency = Histogram(
            "telephony_turn_latency_seconds",
            "Caller's end of speech to our first frame of the reply",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.greeting_latency = Histogram(
            "telephony_greeting_latency_seconds",
            "Stream start to the first frame of the greeting",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frame_processing = FrameHistogram()
        r.register(self.frame_processing)
        self.model_connect = Histogram(
            "telephony_model_connect_seconds",
            "Opening the model session",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter("telephony_model_errors", "Model errors", registry=r)
        self.cost = Counter(
            "telephony_call_cost_usd",
            "Estimated cost of ended calls (model tokens and carrier minutes), USD, by outcome",
            ["outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "telephony_rejected", "Requests refused, by reason", ["reason"], registry=r
        )
        self.transfers = Counter(
            "telephony_transfers",
            "Transfers, by mode (cold, warm) and outcome (transferred; a warm one's accepted, "
            "declined, no_answer, busy, failed, voicemail, hung_up, timeout, cancelled)",
            ["mode", "outcome"],
            registry=r,
        )

    def observe(self, record: dict[str, Any]) -> None:
        """A call-log record was written."""
        event = record.get("event")
        if event == "model.connected":
            self.model_connect.observe(record["connect_ms"] / 1000)
        elif event == "latency":
            if "turn_latency_ms" in record:
                self.turn_latency.observe(record["turn_latency_ms"] / 1000)
            if "greeting_ms" in record:
                self.greeting_latency.observe(record["greeting_ms"] / 1000)
        elif event in ("model.error", "model.connect_failed"):
            self.model_errors.inc()
        elif event == "call.rejected":
            self.rejected.labels(reason="busy").inc()
        elif event == "call.transfer" and record.get("mode") == "cold":
            self.transfers.labels(mode="cold", outcome="transferred").inc()
        elif event in WARM_OUTCOME_EVENTS and record.get("leg") != "person":
            result = record.get("outcome") or event.removeprefix("transfer.")
            self.transfers.labels(mode="warm", outcome=str(result)[:20]).inc()
        elif event == "call.end":
            label = outcome(record.get("reason"))
            self.calls.labels(outcome=label).inc()
            cost = (record.get("cost_usd") or {}).get("total")
            if isinstance(cost, int | float) and cost > 0:
                self.cost.labels(outcome=label).inc(cost)

    def frame(self, direction: str, seconds: float, frames: int = 1) -> None:
        """``frames`` 20 ms frames processed in ``seconds`` each (``direction``: ``in`` or
        ``out``)."""
        self.frame_processing.observe(direction, seconds, frames)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class FrameHistogram(Collector):
    """``telephony_frame_processing_seconds{direction}``: bridge CPU per 20 ms frame (parse +
    transcode), a histogram over :data:`FRAME_BUCKETS` exposed as prometheus-client's
    ``Histogram`` exposes one (buckets, count, sum; no ``_created``). Counted here, at a
    bisect and two additions a frame: ``Histogram.observe`` (a lock and a loop over the buckets
    in Python, 2.2 µs) ran for every caller frame and every frame to the caller."""

    NAME = "telephony_frame_processing_seconds"
    DIRECTIONS = ("in", "out")

    def __init__(self) -> None:
        self._counts = {d: [0] * (len(FRAME_BUCKETS) + 1) for d in self.DIRECTIONS}
        self._sums = dict.fromkeys(self.DIRECTIONS, 0.0)
        self._bounds = [*map(floatToGoString, FRAME_BUCKETS), "+Inf"]

    def observe(self, direction: str, seconds: float, frames: int = 1) -> None:
        """``frames`` frames of ``seconds`` each; raises KeyError for another direction."""
        self._counts[direction][bisect.bisect_left(FRAME_BUCKETS, seconds)] += frames
        self._sums[direction] += seconds * frames

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.NAME, "Bridge CPU per 20 ms frame (parse + transcode)", labels=["direction"]
        )
        for direction in self.DIRECTIONS:
            total, buckets = 0, []
            for bound, count in zip(self._bounds, self._counts[direction], strict=True):
                total += count
                buckets.append((bound, float(total)))
            family.add_metric([direction], buckets, sum_value=self._sums[direction])
        yield family


# the caller leg's record of a warm transfer's outcome (the person's leg writes some too)
WARM_OUTCOME_EVENTS = frozenset(
    {"transfer.accepted", "transfer.declined", "transfer.timeout", "transfer.cancelled"}
)


def outcome(reason: object) -> str:
    """A call-end reason as a label value: itself if known, ``refused`` for refusals, else
    ``other`` (so no caller-chosen text becomes a label)."""
    text = str(reason)
    if text in CALL_OUTCOMES:
        return text
    return "refused" if text.startswith("refused") else "other"
