"""Render one call log as a picture (the command: ``python -m telephony.timeline``).

One time axis (seconds since the stream started), three lanes:

- **caller**: speech as the model's VAD heard it, and what was transcribed;
- **agent**: audio sent to Twilio (light) and audio Twilio played, from echoed marks (dark);
  what the agent said;
- **events**: ``clear`` (red lines across all lanes), tool calls, DTMF, model errors,
  reconnects, and each response's tokens and cost where the model reports its usage.

Latencies are drawn as arrows with their values: greeting, each turn (end of speech to the
first frame of the reply) and each barge-in (start of speech to ``clear``). The output is a
self-contained SVG, or HTML around it when the file name ends in ``.html``; nothing external is
loaded, and transcript text is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from .call_log import seconds_between

__all__ = ["geometry", "render_page", "render_svg"]

WIDTH = 1400
LEFT = 110
RIGHT = 30
LANES = {"caller": 90, "agent": 190, "events": 290}
LANE_H = 46
CHAR_W = 6.5  # px a label character takes (11 px sans-serif), for keeping labels apart
LABEL_STEP = 12  # px between label rows
LABEL_ROWS = 3  # rows a label may move down to avoid another
HEIGHT = 380


EVENT_LABELS = {
    "tool.start": lambda r: f"tool {r.get('tool')}",
    "dtmf": lambda r: f"key {r.get('digit')}",
    "model.error": lambda r: "model error",
    "model.reconnecting": lambda r: "reconnect",
    "call.hangup": lambda r: "hang-up",
    "call.transfer": lambda r: f"transfer {r.get('destination')}",
    "transfer.started": lambda r: f"dialling {r.get('destination')}",
    "transfer.accepted": lambda r: "accepted",
    "transfer.declined": lambda r: f"declined: {r.get('outcome') or r.get('why')}",
    "transfer.timeout": lambda r: "no decision",
    "transfer.cancelled": lambda r: "transfer cancelled",
    "hold.started": lambda r: "hold",
    "greeting.requested": lambda r: "greeting",
    "model.usage": lambda r: (
        f"{sum((r.get('tokens') or {}).values())} tok ${r.get('cost_usd', 0):.4f}"
    ),
}
STYLE = (
    ".title{font:bold 14px sans-serif}.lane{fill:#f6f6f6;stroke:#ddd}"
    ".lane-name{font:bold 13px sans-serif;fill:#444}.axis{font:11px sans-serif;fill:#666;"
    "text-anchor:middle}.tick{stroke:#999}.speech{fill:#4a90d9}.sent{fill:#bfe3c0}"
    ".played{fill:#2e8b57}.said{font:italic 11px sans-serif;fill:#333}"
    ".clear{stroke:#d0021b;stroke-width:2}.clear.idle{stroke:#f5a0a8;stroke-dasharray:3 3}"
    ".event{font:11px sans-serif;fill:#333}.lat{stroke:#7b2cbf;stroke-width:1.5;"
    "marker-end:url(#head)}.lat-label{font:bold 11px sans-serif;fill:#7b2cbf}"
    "circle{fill:#f5a623}"
)


class _Canvas:
    """One call's records on one time axis: seconds since the stream started."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        if not records:
            raise ValueError("empty call log")
        self.records = records
        starts = [r for r in records if r["event"] in ("stream.start", "sip.incoming")]
        self.origin = starts[0] if starts else records[0]
        self.span = max(max(self.t(r) for r in records), 1.0)
        self.scale = (WIDTH - LEFT - RIGHT) / self.span
        self.out: list[str] = []
        self._taken: dict[float, list[tuple[float, float]]] = {}  # row y -> labels' x spans

    def label(self, x: float, y: float, text: str, cls: str) -> None:
        """A text label at ``x``, on row ``y`` or, where it would overlap a label already on
        that row, the first row below (``LABEL_STEP`` apart) where it does not."""
        width = len(text) * CHAR_W
        for _ in range(LABEL_ROWS):
            spans = self._taken.setdefault(y, [])
            if all(x >= end or x + width <= start for start, end in spans):
                break
            y += LABEL_STEP
        spans = self._taken.setdefault(y, [])
        spans.append((x, x + width))
        self.add(f'<text x="{x}" y="{y}" class="{cls}">{html.escape(text)}</text>')

    def t(self, record: dict[str, Any]) -> float:
        return seconds_between(self.origin, record)

    def x(self, seconds: float) -> float:
        return LEFT + max(0.0, seconds) * self.scale

    def add(self, element: str) -> None:
        self.out.append(element)

    def said(self, at: float, lane: str, text: Any) -> None:
        self.add(
            f'<text x="{self.x(at)}" y="{LANES[lane] + 36}" class="said">'
            f"“{html.escape(str(text)[:60])}”</text>"
        )

    def arrow(self, start: float, end: float, lane: str, label: str) -> None:
        x1, x2, y = self.x(start), self.x(end), LANES[lane] - 20
        self.add(f'<line x1="{x1}" y1="{y}" x2="{max(x2, x1 + 2)}" y2="{y}" class="lat"/>')
        self.label(x1, y - 4, label, "lat-label")

    def frame(self) -> None:
        """Title, lanes and the seconds axis."""
        records, esc = self.records, html.escape
        final = next((r for r in reversed(records) if r["event"] == "call.end"), {})
        metrics = final.get("metrics") or {}
        self.add(
            f'<text x="{LEFT}" y="24" class="title">{esc(str(records[0].get("call_sid")))} · '
            f"{esc(str(final.get('reason', 'no call.end')))} · {self.span:.2f} s · "
            f"turn latency p50 {metrics.get('turn_latency_p50_ms')} ms · "
            f"frame in p99 {metrics.get('frame_in_us_p99')} µs</text>"
        )
        for name, y in LANES.items():
            self.add(
                f'<rect x="{LEFT}" y="{y - LANE_H / 2}" width="{WIDTH - LEFT - RIGHT}" '
                f'height="{LANE_H}" class="lane"/>'
            )
            self.add(f'<text x="10" y="{y + 5}" class="lane-name">{name}</text>')
        for second in range(int(self.span) + 1):
            x = self.x(second)
            self.add(
                f'<line x1="{x}" y1="{HEIGHT - 40}" x2="{x}" y2="{HEIGHT - 34}" class="tick"/>'
            )
            self.add(f'<text x="{x}" y="{HEIGHT - 20}" class="axis">{second} s</text>')

    def caller(self) -> None:
        """Caller speech (audio time ≈ seconds since start: Twilio streams in real time)."""
        started: float | None = None
        for r in self.records:
            if r["event"] == "speech.started" and r.get("audio_start_ms") is not None:
                started = r["audio_start_ms"] / 1000
            elif r["event"] == "speech.stopped" and started is not None:
                stop = r["audio_end_ms"] / 1000
                width = (stop - started) * self.scale
                self.add(_rect(self.x(started), LANES["caller"] - 12, width, 24, "speech"))
                started = None
            elif r["event"] == "transcript.caller":
                self.said(self.t(r), "caller", r.get("text", ""))

    def agent(self) -> None:
        """Agent audio: sent (per mark, ending at its send time) and played (ending at the echo)."""
        y = LANES["agent"]
        for r in self.records:
            t = self.t(r)
            if r["event"] == "mark.sent":
                self.add(_rect(self.x(t), y - 12, r["ms"] / 1000 * self.scale, 8, "sent"))
            elif r["event"] == "mark.played":
                begin = t - r["ms"] / 1000
                self.add(_rect(self.x(begin), y - 2, r["ms"] / 1000 * self.scale, 14, "played"))
            elif r["event"] == "transcript.agent":
                self.said(t, "agent", r.get("text", ""))

    def events(self) -> None:
        """Clears across every lane, other events as dots, latencies as arrows."""
        y = LANES["events"]
        for r in self.records:
            t, kind = self.t(r), r["event"]
            if kind == "clear.sent":
                cls = "clear" if r.get("playing") else "clear idle"
                x = self.x(t)
                self.add(
                    f'<line x1="{x}" y1="{LANES["caller"] - LANE_H / 2}" x2="{x}" '
                    f'y2="{y + LANE_H / 2}" class="{cls}"/>'
                )
                self.label(x + 3, y - 8, "clear", "event")
            elif kind in EVENT_LABELS:
                self.add(f'<circle cx="{self.x(t)}" cy="{y + 8}" r="4"/>')
                self.label(self.x(t) + 6, y + 12, EVENT_LABELS[kind](r), "event")
            elif kind == "latency":
                for key, label in (("greeting_ms", "greeting"), ("turn_latency_ms", "turn")):
                    if key in r:
                        self.arrow(t - r[key] / 1000, t, "agent", f"{label} {r[key]:.0f} ms")
        for r in self.records:
            if r["event"] == "clear.sent" and r.get("barge_in_ms") is not None:
                t, ms = self.t(r), r["barge_in_ms"]
                self.arrow(t - ms / 1000, t, "caller", f"barge-in {ms:.0f} ms")

    def svg(self) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}"><style>{STYLE}</style>'
            '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
            'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#7b2cbf"/></marker></defs>'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>' + "".join(self.out) + "</svg>"
        )


def geometry(records: list[dict[str, Any]]) -> tuple[float, float]:
    """``(left, scale)`` of the picture :func:`render_svg` draws: call time ``t`` seconds (since
    the stream started) is at ``x = left + t * scale`` in the SVG's own units.

    Raises:
        ValueError: no records.
    """
    canvas = _Canvas(records)
    return float(LEFT), canvas.scale


def render_svg(records: list[dict[str, Any]]) -> str:
    """The SVG document for one call's records (as ``read_call_log`` returns them).

    Raises:
        ValueError: no records.
    """
    canvas = _Canvas(records)
    canvas.frame()
    canvas.caller()
    canvas.agent()
    canvas.events()
    return canvas.svg()


def _rect(x: float, y: float, width: float, height: float, cls: str) -> str:
    return f'<rect x="{x}" y="{y}" width="{max(1.0, width)}" height="{height}" class="{cls}"/>'


def render_page(records: list[dict[str, Any]], title: str) -> str:
    """The timeline as a self-contained HTML page titled ``title`` (escaped)."""
    return f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>" + render_svg(
        records
    )


TRANSFER_OUTCOMES = (
    "transfer.accepted",
    "transfer.declined",
    "transfer.timeout",
    "transfer.cancelled",
)


def transfer_line(records: list[dict[str, Any]]) -> str:
    """A warm transfer on the caller's leg in one line for the call page ('' when there was
    none): where to, and its outcome (or that it is under way), with the seconds it took."""
    asked = next((r for r in records if r.get("event") == "transfer.requested"), None)
    if asked is None or asked.get("mode") != "warm":
        return ""
    text = f"warm transfer to {asked.get('destination')} ({asked.get('by', 'agent')})"
    done = next(
        (r for r in records if r.get("event") in TRANSFER_OUTCOMES and r.get("leg") != "person"),
        None,
    )
    if done is None:
        return f"{text}: in progress"
    outcome = done.get("outcome") or str(done["event"]).removeprefix("transfer.")
    why = done.get("why")
    seconds = round(seconds_between(asked, done), 1)
    return f"{text}: {outcome}{f' ({why})' if why else ''} after {seconds} s"
