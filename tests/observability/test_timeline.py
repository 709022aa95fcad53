"""The call timeline renders a committed call log (greeting, two turns, a barge-in)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from helpers import (
    FIXTURES,
)

from telephony.observability.call_log import read_call_log
from telephony.observability.timeline import render_svg
from telephony.timeline import main

SVG = "{http://www.w3.org/2000/svg}"


def test_timeline_shows_speech_audio_clears_and_latencies(tmp_path: Path) -> None:
    records = read_call_log(FIXTURES / "call_barge_in.jsonl")
    root = ET.fromstring(render_svg(records))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    classes = [e.get("class") for e in root.iter()]
    assert classes.count("speech") == 2  # two caller utterances
    assert classes.count("clear") == 1 and classes.count("clear idle") == 1  # barge-in + idle
    played = [r for r in records if r["event"] == "mark.played"]
    assert classes.count("played") == len(played)
    assert any(t.startswith("greeting ") and t.endswith(" ms") for t in texts)
    assert sum(t.startswith("turn ") for t in texts) == 2
    assert any(t.startswith("barge-in ") for t in texts)
    assert "“loopback reply 1”" in texts and "“caller turn 2”" in texts
    # no played audio after the barge-in clear, until the next reply
    origin = records[0]["ts"]
    clear = next(r for r in records if r["event"] == "clear.sent" and r["playing"])
    next_reply = next(r for r in records if r["event"] == "latency" and r["ts"] > clear["ts"])
    assert not [
        r for r in played if clear["ts"] + 0.05 < r["ts"] - r["ms"] / 1000 < next_reply["ts"]
    ]
    assert origin < clear["ts"]


def test_timeline_escapes_transcripts_and_writes_html(tmp_path: Path) -> None:
    records = read_call_log(FIXTURES / "call_barge_in.jsonl")
    evil = dict(records[-2], event="transcript.caller", text='<script>alert("x")</script>')
    log = tmp_path / "call.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in [*records[:-1], evil, records[-1]]))
    assert main([str(log), "-o", str(tmp_path / "call.html")]) == 0
    page = (tmp_path / "call.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert main([str(log)]) == 0 and (tmp_path / "call.svg").exists()
    assert main([str(tmp_path / "missing.jsonl")]) == 2


def test_installed_console_script_renders_a_log(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("telephony-timeline")
    out = tmp_path / "call.html"
    result = subprocess.run(
        [str(script), str(FIXTURES / "call_barge_in.jsonl"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    page = out.read_text("utf-8")
    assert page.startswith("<!doctype html>") and page.count('class="played"') > 10


def test_labels_close_together_never_overlap() -> None:
    """Two barge-ins and their clears 100 ms apart: each label gets a place of its own."""
    from telephony.observability.timeline import CHAR_W

    base = {"call_sid": "CA" + "1" * 32}
    records = [{**base, "ts": 0.0, "event": "stream.start"}]
    for at in (1.0, 1.1):
        records.append(
            {**base, "ts": at, "event": "clear.sent", "playing": True, "barge_in_ms": 250}
        )
    records.append({**base, "ts": 3.0, "event": "call.end", "reason": "caller_hangup"})
    svg = render_svg(records)
    labels = re.findall(
        r'<text x="([\d.]+)" y="([\d.]+)" class="(?:lat-label|event)">([^<]*)<', svg
    )
    assert len(labels) == 4  # two barge-in arrows, two clears
    boxes = [(float(x), float(y), float(x) + len(text) * CHAR_W) for x, y, text in labels]
    for i, (x, y, end) in enumerate(boxes):
        for x2, y2, end2 in boxes[i + 1 :]:
            assert y != y2 or end <= x2 or end2 <= x, (labels[i], (x2, y2))
