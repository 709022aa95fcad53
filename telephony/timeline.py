"""Render one call log as a picture: ``python -m telephony.timeline calls/CA….jsonl [-o out.svg]``.

One time axis (seconds since the stream started), three lanes:

- **caller**: speech as the model's VAD heard it, and what was transcribed;
- **agent**: audio sent to Twilio (light) and audio Twilio played, from echoed marks (dark);
  what the agent said;
- **events**: ``clear`` (red lines across all lanes), tool calls, DTMF, model errors and
  reconnects.

Latencies are drawn as arrows with their values: greeting, each turn (end of speech to the
first frame of the reply) and each barge-in (start of speech to ``clear``). The output is a
self-contained SVG, or HTML around it when the file name ends in ``.html``; nothing external is
loaded, and transcript text is escaped.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

from .call_log import read_call_log

__all__ = ["render_svg"]

WIDTH = 1400
LEFT = 110
RIGHT = 30
LANES = {"caller": 90, "agent": 190, "events": 290}
LANE_H = 46
HEIGHT = 380


def _t(record: dict[str, Any], origin: float) -> float:
    return float(record["ts"]) - origin


def render_svg(records: list[dict[str, Any]]) -> str:
    """The SVG document for one call's records (as ``read_call_log`` returns them)."""
    if not records:
        raise ValueError("empty call log")
    starts = [r for r in records if r["event"] in ("stream.start", "sip.incoming")]
    origin = float((starts[0] if starts else records[0])["ts"])
    end = max(_t(r, origin) for r in records)
    span = max(end, 1.0)
    scale = (WIDTH - LEFT - RIGHT) / span

    def x(seconds: float) -> float:
        return LEFT + max(0.0, seconds) * scale

    out: list[str] = []
    add = out.append
    esc = html.escape
    final = next((r for r in reversed(records) if r["event"] == "call.end"), {})
    metrics = final.get("metrics") or {}
    add(
        f'<text x="{LEFT}" y="24" class="title">{esc(str(records[0].get("call_sid")))} · '
        f"{esc(str(final.get('reason', 'no call.end')))} · {span:.2f} s · "
        f"turn latency p50 {metrics.get('turn_latency_p50_ms')} ms · "
        f"frame in p99 {metrics.get('frame_in_us_p99')} µs</text>"
    )
    for name, y in LANES.items():
        add(
            f'<rect x="{LEFT}" y="{y - LANE_H / 2}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{LANE_H}" class="lane"/>'
        )
        add(f'<text x="10" y="{y + 5}" class="lane-name">{name}</text>')
    for second in range(int(span) + 1):  # axis
        add(
            f'<line x1="{x(second)}" y1="{HEIGHT - 40}" x2="{x(second)}" y2="{HEIGHT - 34}" '
            'class="tick"/>'
        )
        add(f'<text x="{x(second)}" y="{HEIGHT - 20}" class="axis">{second} s</text>')

    # caller speech (audio time ~ seconds since start: Twilio streams in real time)
    started: float | None = None
    for r in records:
        if r["event"] == "speech.started" and r.get("audio_start_ms") is not None:
            started = r["audio_start_ms"] / 1000
        elif r["event"] == "speech.stopped" and started is not None:
            stop = r["audio_end_ms"] / 1000
            add(_rect(x(started), LANES["caller"] - 12, (stop - started) * scale, 24, "speech"))
            started = None
        elif r["event"] == "transcript.caller":
            add(
                f'<text x="{x(_t(r, origin))}" y="{LANES["caller"] + 36}" class="said">'
                f"“{esc(str(r.get('text', ''))[:60])}”</text>"
            )

    # agent audio: sent (per mark, ending at its send time) and played (ending at the echo)
    for r in records:
        t = _t(r, origin)
        if r["event"] == "mark.sent":
            add(_rect(x(t), LANES["agent"] - 12, r["ms"] / 1000 * scale, 8, "sent"))
        elif r["event"] == "mark.played":
            begin = t - r["ms"] / 1000
            add(_rect(x(begin), LANES["agent"] - 2, r["ms"] / 1000 * scale, 14, "played"))
        elif r["event"] == "transcript.agent":
            add(
                f'<text x="{x(t)}" y="{LANES["agent"] + 36}" class="said">'
                f"“{esc(str(r.get('text', ''))[:60])}”</text>"
            )

    # events
    for r in records:
        t, kind = _t(r, origin), r["event"]
        if kind == "clear.sent":
            cls = "clear" if r.get("playing") else "clear idle"
            add(
                f'<line x1="{x(t)}" y1="{LANES["caller"] - LANE_H / 2}" x2="{x(t)}" '
                f'y2="{LANES["events"] + LANE_H / 2}" class="{cls}"/>'
            )
            add(f'<text x="{x(t) + 3}" y="{LANES["events"] - 8}" class="event">clear</text>')
        elif kind in (
            "tool.start",
            "dtmf",
            "model.error",
            "model.reconnecting",
            "call.hangup",
            "call.transfer",
            "greeting.requested",
        ):
            label = {
                "tool.start": f"tool {r.get('tool')}",
                "dtmf": f"key {r.get('digit')}",
                "model.error": "model error",
                "model.reconnecting": "reconnect",
                "call.hangup": "hang-up",
                "call.transfer": f"transfer {r.get('destination')}",
                "greeting.requested": "greeting",
            }[kind]
            add(f'<circle cx="{x(t)}" cy="{LANES["events"] + 8}" r="4"/>')
            add(
                f'<text x="{x(t) + 6}" y="{LANES["events"] + 12}" class="event">{esc(label)}</text>'
            )
        elif kind == "latency":
            for key, (lane, label) in {
                "greeting_ms": ("agent", "greeting"),
                "turn_latency_ms": ("agent", "turn"),
            }.items():
                if key in r:
                    _arrow(
                        add,
                        x(t - r[key] / 1000),
                        x(t),
                        LANES[lane] - 20,
                        f"{label} {r[key]:.0f} ms",
                    )
    for r in records:
        if r["event"] == "clear.sent" and r.get("barge_in_ms") is not None:
            t = _t(r, origin)
            _arrow(
                add,
                x(t - r["barge_in_ms"] / 1000),
                x(t),
                LANES["caller"] - 20,
                f"barge-in {r['barge_in_ms']:.0f} ms",
            )

    style = (
        ".title{font:bold 14px sans-serif}.lane{fill:#f6f6f6;stroke:#ddd}"
        ".lane-name{font:bold 13px sans-serif;fill:#444}.axis{font:11px sans-serif;fill:#666;"
        "text-anchor:middle}.tick{stroke:#999}.speech{fill:#4a90d9}.sent{fill:#bfe3c0}"
        ".played{fill:#2e8b57}.said{font:italic 11px sans-serif;fill:#333}"
        ".clear{stroke:#d0021b;stroke-width:2}.clear.idle{stroke:#f5a0a8;stroke-dasharray:3 3}"
        ".event{font:11px sans-serif;fill:#333}.lat{stroke:#7b2cbf;stroke-width:1.5;"
        "marker-end:url(#head)}.lat-label{font:bold 11px sans-serif;fill:#7b2cbf}"
        "circle{fill:#f5a623}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><style>{style}</style>'
        '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#7b2cbf"/></marker></defs>'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>' + "".join(out) + "</svg>"
    )


def _rect(x: float, y: float, width: float, height: float, cls: str) -> str:
    return f'<rect x="{x}" y="{y}" width="{max(1.0, width)}" height="{height}" class="{cls}"/>'


def _arrow(add: Any, x1: float, x2: float, y: float, label: str) -> None:
    add(f'<line x1="{x1}" y1="{y}" x2="{max(x2, x1 + 2)}" y2="{y}" class="lat"/>')
    add(f'<text x="{x1}" y="{y - 4}" class="lat-label">{html.escape(label)}</text>')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.timeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", type=Path, help="a call log, $CALL_LOG_DIR/<call id>.jsonl")
    parser.add_argument("-o", "--out", type=Path, help="output .svg or .html (default: next to it)")
    args = parser.parse_args(argv)
    try:
        svg = render_svg(read_call_log(args.log))
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    out = args.out or args.log.with_suffix(".svg")
    if out.suffix == ".html":
        title = html.escape(args.log.stem)
        out.write_text(f"<!doctype html><meta charset=utf-8><title>{title}</title>{svg}", "utf-8")
    else:
        out.write_text(svg, "utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
