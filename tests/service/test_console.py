"""The operator console over HTTP: off without CONSOLE_TOKEN (404), 401 for a wrong token,
the call list from the index (filters, search, masked numbers), a call page with its
timeline, transcript and recording, and the hang-up path for a live call. (A real-browser test
of the pages' JavaScript is still to come: see the issue 18 note.)"""

from __future__ import annotations

import asyncio
import json

import httpx
from helpers import SILENCE, fixture_audio

from telephony.console import CallIndex, mask_number
from telephony.console.index import INDEX_NAME
from telephony.testing import tone

TOKEN = "console-token-0123456789abcdef"


def test_numbers_are_masked_to_their_last_digits() -> None:
    assert mask_number("+15551234567") == "+1••••••4567"
    assert mask_number("sip:alice@example.com") == "•••"
    assert mask_number(None) == ""


async def test_the_console_is_off_without_a_token(live_server) -> None:
    async with live_server() as srv, httpx.AsyncClient(base_url=srv.base_url) as http:
        assert (await http.get("/console")).status_code == 404
        assert (await http.get("/console/login")).status_code == 404


async def test_a_new_console_says_how_to_place_a_first_call(live_server) -> None:
    async with live_server(overrides={"console_token": TOKEN}) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            assert "CONSOLE_TOKEN" in (await http.get("/console/login")).text
            await http.post("/console/login", data={"token": TOKEN})
            page = (await http.get("/console")).text
            phone = await http.get("/console/phone")
            refused = await http.post("/console/phone/calls")  # no X-Console: not the page's
    assert 'id="empty"' in page and 'href="/console/phone"' in page
    assert "telephony.simulate" in page
    assert phone.status_code == 200 and 'id="call"' in phone.text
    assert refused.status_code == 403


async def test_sign_in_list_search_open_a_call_and_its_recording(live_server) -> None:
    overrides = {"console_token": TOKEN, "record_calls": True, "greeting": "Hello."}
    async with live_server(overrides=overrides, reply=lambda _: tone(600, 400)) as srv:
        result = await srv.call(fixture_audio("goforward.ulaw"), speed=4, tail_s=0.5)
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            to_form = await http.get("/console")
            assert to_form.status_code == 303 and to_form.headers["location"] == "/console/login"
            assert (await http.get(f"/console/calls/{result.call_sid}")).status_code == 401
            wrong = await http.post("/console/login", data={"token": "x" * 30})
            assert wrong.status_code == 401
            signed = await http.post("/console/login", data={"token": TOKEN})
            assert signed.status_code == 303 and TOKEN not in signed.headers["set-cookie"]
            for _ in range(100):  # the index is written off the event loop
                page = await http.get("/console")
                if result.call_sid in page.text:
                    break
                await asyncio.sleep(0.02)
            assert page.status_code == 200 and result.call_sid in page.text
            assert "+15550001111" not in page.text and "+1••••••1111" in page.text
            assert "caller_hangup" in page.text
            none = await http.get("/console", params={"q": "CA0000"})
            assert result.call_sid not in none.text
            found = await http.get("/console", params={"q": result.call_sid[:12]})
            assert result.call_sid in found.text
            call = await http.get(f"/console/calls/{result.call_sid}")
            assert call.status_code == 200
            assert "<svg" in call.text and 'id="transcript"' in call.text
            assert "caller turn" in call.text and "loopback reply" in call.text  # transcripts
            assert "+15550001111" not in call.text
            wav = await http.get(f"/console/calls/{result.call_sid}/recording.wav")
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
            assert (await http.get("/console/calls/../../etc/passwd")).status_code == 404
            assert (await http.get("/console/live.json")).json() == []
    assert TOKEN not in call.text and TOKEN not in page.text


async def test_a_live_call_shows_and_hangs_up_from_the_console(live_server) -> None:
    async with live_server(overrides={"console_token": TOKEN, "greeting": ""}) as srv:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers) as http:
            call = asyncio.create_task(srv.call(SILENCE * 8000 * 30, speed=1, tail_s=0.5))
            for _ in range(200):
                live = (await http.get("/console/live.json")).json()
                if live:
                    break
                await asyncio.sleep(0.02)
            (entry,) = live
            forged = await http.post(f"/console/calls/{entry['call_sid']}/hangup")
            assert forged.status_code == 403  # no X-Console header: not from the page
            hung = await http.post(
                f"/console/calls/{entry['call_sid']}/hangup", headers={"X-Console": "1"}
            )
            assert hung.status_code == 200
            result = await asyncio.wait_for(call, 20)
            assert result.closed_by_server
            assert (await http.get("/console/live.json")).json() == []


def test_the_index_rebuilds_from_the_logs(tmp_path) -> None:
    for n in range(30):
        sid = f"CA{n:032x}"
        reason = "caller_hangup" if n % 2 else "idle_timeout"
        records = [
            {"ts": 1_800_000_000 + n, "call_sid": sid, "event": "webhook", "from": "+1555"},
            {"ts": 1_800_000_010 + n, "call_sid": sid, "event": "call.end", "reason": reason},
        ]
        (tmp_path / f"{sid}.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    index = CallIndex(tmp_path)
    assert index.rebuild() == 30 and (tmp_path / INDEX_NAME).exists()
    rows, total = index.page(limit=10, outcome="idle_timeout")
    assert total == 15 and len(rows) == 10
    assert rows[0].started > rows[-1].started  # newest first


def test_retention_deletes_old_logs_and_recordings_and_their_index_rows(tmp_path) -> None:
    import os

    from telephony.observability.retention import sweep

    old, new = "CA" + "1" * 32, "CA" + "2" * 32
    for sid in (old, new):
        records = [{"ts": 1, "call_sid": sid, "event": "call.end", "reason": "caller_hangup"}]
        (tmp_path / f"{sid}.jsonl").write_text(json.dumps(records[0]) + "\n")
        (tmp_path / f"{sid}.wav").write_bytes(b"RIFF")
    now = 1_900_000_000.0
    for suffix in (".jsonl", ".wav"):
        os.utime(tmp_path / f"{old}{suffix}", (now - 31 * 86400,) * 2)
        os.utime(tmp_path / f"{new}{suffix}", (now - 29 * 86400,) * 2)
    index = CallIndex(tmp_path)
    index.rebuild()
    gone = sweep(tmp_path, 30, now=now)
    index.forget(gone)
    assert gone == [old]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        f"{new}.jsonl",
        f"{new}.wav",
    ]
    assert [r.call_sid for r in index.page()[0]] == [new]


def test_the_list_says_which_model_served_each_call_and_an_old_index_gains_the_column(
    tmp_path,
) -> None:
    """GPT-Live's ``call.end`` names its backend; a Realtime call's ``model.connected`` does.
    An index written before the column existed is migrated in place, its rows kept."""
    import sqlite3

    old = sqlite3.connect(tmp_path / INDEX_NAME)
    old.execute(
        "CREATE TABLE calls (call_sid TEXT PRIMARY KEY, started REAL, direction TEXT,"
        " caller TEXT, callee TEXT, duration_s REAL, reason TEXT, latency_p50_ms REAL,"
        " interruptions INTEGER, cost_usd REAL)"
    )
    old.execute("INSERT INTO calls VALUES ('CA' || printf('%032d', 1), 1.0, 'inbound',"
                " NULL, NULL, 1.0, 'caller_hangup', NULL, 0, NULL)")  # fmt: skip
    old.commit()
    old.close()
    calls = {
        f"CA{2:032x}": [{"event": "call.end", "reason": "agent_hangup", "backend": "live"}],
        f"CA{3:032x}": [
            {"event": "model.connected", "backend": "openai"},
            {"event": "call.end", "reason": "caller_hangup"},
        ],
    }
    index = CallIndex(tmp_path)
    for n, (sid, records) in enumerate(calls.items()):
        lines = [{"ts": 1_800_000_000 + n, "call_sid": sid, **r} for r in records]
        (tmp_path / f"{sid}.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
        index.add_log(sid)
    rows, total = index.page(limit=10)
    assert total == 3
    assert [r.backend for r in rows] == ["openai", "live", None]
