"""Warm transfer on GPT-Live (``REALTIME_BACKEND=live``, issue 33): both legs through one real
``server.py`` process, the simulated Twilio for each leg (the person's leg dialled through the
Twilio REST stand-in, its webhook and stream answered as Twilio would) and the fake GPT-Live
server playing both agents: the caller's delegate asks for the transfer, the briefing agent's
(told apart by its ``session.start``, whose delegate instructions say a caller is on hold)
accepts or declines once the person answers. Each simulated leg leaves its stream when the
stand-in is asked to move or end its call, as Twilio ends a stream then."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from helpers import AUTH_TOKEN, ended_log, events, fixture_audio, twilio_api, wait_for
from processes import ServerProcess

from telephony.audio import ulaw_encode
from telephony.observability.call_log import read_call_log
from telephony.simulate import Say, answer_call, simulate_call
from telephony.testing import tone
from telephony.testing.live_server import FakeLiveServer, LiveConnection

TARGET, FROM = "+15550003333", "+15550009999"
SUMMARY = "Dana wants to move her delivery of order 4411 to Friday"
QUIET = b"\xff" * 160
WORDS = ulaw_encode(  # 600 ms of a loud 300 Hz "voice"
    np.rint(8000 * np.sin(2 * np.pi * 300 * np.arange(4800) / 8000)).astype("<i2").tobytes()
)
ANNOUNCEMENT_MS = 800
BRIEFING_MS = 3000  # the person hears the briefing this long before answering
TRANSFER = [("transfer_call", json.dumps({"destination": "sales", "summary": SUMMARY}))]
ACCEPT = [("accept_transfer", "{}")]


def briefs(config: dict[str, Any]) -> bool:
    """Whether a ``session.start`` config is a briefing agent's (its delegate is told that a
    caller is on hold)."""
    return "is on hold" in config.get("delegation", {}).get("responses", {}).get("instructions", "")


def agents(person: list[tuple[str, str]]) -> Any:
    """The fake's delegations: the caller's agent transfers at the caller's first turn; the
    briefing agent does ``person`` at the person's first."""

    def delegate_for(config: dict[str, Any], n: int) -> list[tuple[str, str]]:
        if briefs(config):
            return person if n == 0 else []
        return TRANSFER if n == 0 else []

    return delegate_for


def caller_connections(fake: FakeLiveServer) -> list[LiveConnection]:
    return [c for c in fake.connections if not briefs(c.session or {})]


def env(fake: FakeLiveServer, workdir: Path, rest: dict[str, str]) -> dict[str, str]:
    return {
        "REALTIME_BACKEND": "live",
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": fake.base_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": rest["twilio_account_sid"],
        "TWILIO_API_BASE_URL": rest["twilio_api_base_url"],
        "CALL_LOG_DIR": str(workdir / "calls"),
        "GREETING": "",
        "TRANSFER_TARGETS": f"sales={TARGET}",
        "TRANSFER_WARM": "sales",
        "TWILIO_FROM_NUMBER": FROM,
        "TRANSFER_OFFER": "to take a message",
    }


async def person_leg(server: ServerProcess, stand_in: Any, **call: Any) -> Any:
    """Twilio's side of the person's leg: the webhook the create request named, then its
    stream in real time until its call is moved or ended."""
    await wait_for(lambda: stand_in.created, 30, "the person's call placed")
    person_sid = stand_in.created[0]
    create = next(r for r in stand_in.requests if r.path.endswith("/Calls.json"))
    answer = await answer_call(
        server.base_url,
        auth_token=AUTH_TOKEN,
        call_sid=person_sid,
        webhook=create.form["Url"].removeprefix(server.base_url),
        direction="outbound-api",
        from_number=FROM,
        to_number=TARGET,
    )
    return await simulate_call(
        server.base_url,
        b"",
        auth_token=AUTH_TOKEN,
        answer=answer,
        ended=stand_in.leaves(person_sid),
        **call,
    )


async def speak_on_hold(fake: FakeLiveServer, log: Path) -> None:
    """Once the caller holds, the model takes a turn of its own (as GPT-Live may): it speaks."""
    await wait_for(
        lambda: log.exists() and any(r.get("why") == "transfer" for r in read_call_log(log)),
        30,
        "the caller on hold",
    )
    await caller_connections(fake)[0].caller_turn()


async def transfer(
    tmp_path: Path,
    person: list[tuple[str, str]],
    caller_ends: Any,
    model_speaks_on_hold: bool = False,
    **person_call: Any,
) -> tuple[FakeLiveServer, Any, str, str, list[dict[str, Any]], list[dict[str, Any]]]:
    """One warm transfer: the caller asks at once and speaks again 2 s into what they hear
    after it (the announcement, then the hold); returns the fake, the stand-in, both CallSids
    and both logs."""
    fake = FakeLiveServer(
        greeting=tone(500, BRIEFING_MS),
        reply=lambda n: tone(600, ANNOUNCEMENT_MS),
        delegate_for=agents(person),
    )
    async with fake, twilio_api() as (stand_in, rest):
        server = ServerProcess(env(fake, tmp_path, rest), tmp_path)
        try:
            await server.up()
            caller_sid = "CA" + secrets.token_hex(16)
            again = [Say(WORDS, heard_s=(ANNOUNCEMENT_MS + 1200) / 1000)]
            caller = asyncio.create_task(
                simulate_call(
                    server.base_url,
                    QUIET * 25 + WORDS + QUIET * 50,
                    auth_token=AUTH_TOKEN,
                    call_sid=caller_sid,
                    script=again,
                    ended=caller_ends(stand_in, caller_sid, fake),
                    max_tail_s=40,
                )
            )
            log_dir = tmp_path / "calls"
            if model_speaks_on_hold:
                await speak_on_hold(fake, log_dir / f"{caller_sid}.jsonl")
            person_result = await person_leg(server, stand_in, max_tail_s=30, **person_call)
            await caller
            person_sid = stand_in.created[0]
            caller_log = await ended_log(log_dir, caller_sid, 15)
            person_log = await ended_log(log_dir, person_sid, 15)
        finally:
            server.stop()
    assert person_result.turns and person_result.turns[0].frames > 0  # the briefing was heard
    return fake, stand_in, caller_sid, person_sid, caller_log, person_log


def assert_caller_held(
    fake: FakeLiveServer, caller_log: list[dict[str, Any]], model_turns: int = 0
) -> None:
    """The caller heard the announcement whole, then the hold sound; their words during the
    hold reached the model as silence (it heard one turn of theirs only; ``model_turns``
    more were the fake's own)."""
    (held,) = [r for r in events(caller_log, "hold.started") if r.get("why") == "transfer"]
    (asked,) = events(caller_log, "transfer.requested")
    assert asked["mode"] == "warm" and asked["mono"] < held["mono"]
    before = [r for r in caller_log if r["mono"] <= held["mono"]]
    speech = {r["name"]: r["frames"] for r in events(before, "mark.sent") if r["speech"]}
    played = {r["name"] for r in events(before, "mark.played")}
    assert sum(speech.values()) * 20 >= ANNOUNCEMENT_MS - 40 and set(speech) <= played
    (conn,) = caller_connections(fake)
    assert conn.turns == 1 + model_turns and conn.audio_bytes > 0


async def test_a_warm_transfer_briefs_the_person_on_gpt_live_and_joins_both(
    tmp_path: Path,
) -> None:
    fake, stand_in, caller_sid, person_sid, caller_log, person_log = await transfer(
        tmp_path,
        ACCEPT,
        lambda stand_in, sid, _fake: stand_in.leaves(sid),
        model_speaks_on_hold=True,
        script=[Say(fixture_audio("okay.ulaw"), quiet_s=0.3)],
    )
    create = next(r for r in stand_in.requests if r.path.endswith("/Calls.json"))
    assert create.form["To"] == TARGET and create.form["From"] == FROM
    assert "transfer=" in create.form["Url"]
    # the person's leg ran the briefing agent on GPT-Live, its opening naming the request
    (briefing,) = [c for c in fake.connections if briefs(c.session or {})]
    tools = [t["name"] for t in briefing.session["delegation"]["responses"]["tools"]]
    assert sorted(tools) == ["accept_transfer", "decline_transfer"]
    (opening,) = events(person_log, "greeting.requested")
    assert SUMMARY in opening["text"]
    assert events(person_log, "transfer.accepted")[0]["why"] == "voice"
    assert_caller_held(fake, caller_log, model_turns=1)
    # what the model said while the caller held was not played over the hold sound
    assert caller_log[-1]["held_out_frames"] >= ANNOUNCEMENT_MS // 20 - 10
    # both calls moved into one conference; the agent left both legs
    room = f"warm-{caller_sid}"
    for sid in (caller_sid, person_sid):
        assert any(room in u.get("Twiml", "") for u in stand_in.updates(sid)), sid
    started = events(caller_log, "transfer.started")[0]
    assert started["person_leg"] == person_sid and started["destination"] == "sales"
    assert events(caller_log, "transfer.accepted")[0]["via"] == f"twilio_conference {room}"
    assert caller_log[-1]["reason"] == "transferred" and person_log[-1]["reason"] == "transferred"
    assert caller_log[-1]["backend"] == "live"


async def test_a_declined_warm_transfer_gives_the_caller_back_to_the_agent(
    tmp_path: Path,
) -> None:
    """The person presses 2: their leg says goodbye and hangs up; the caller's hold stops and
    the agent is asked (a commentary instruction) to say so and offer a message."""

    def told_then_hang_up(stand_in: Any, sid: str, fake: FakeLiveServer) -> asyncio.Event:
        ended = asyncio.Event()

        async def watch() -> None:
            await wait_for(lambda: any(said(c) for c in caller_connections(fake)), 40, "note")
            await asyncio.sleep(0.5)  # (no assertion rests on hearing it)
            ended.set()

        task = asyncio.get_running_loop().create_task(watch())
        task.add_done_callback(lambda t: ended.set())
        return ended

    fake, stand_in, caller_sid, person_sid, caller_log, person_log = await transfer(
        tmp_path, [], told_then_hang_up, dtmf=[(BRIEFING_MS / 1000 + 0.5, "2")]
    )
    (declined,) = events(caller_log, "transfer.declined")
    assert declined["outcome"] == "declined" and declined["why"] == "keypad"
    assert events(caller_log, "hold.stopped")[0]["why"] == "released"
    notes = [n for c in caller_connections(fake) for n in said(c)]
    assert any("did not happen" in n and "to take a message" in n for n in notes), notes
    assert_caller_held(fake, caller_log)
    assert person_log[-1]["reason"] == "transfer_declined"
    assert stand_in.updates(person_sid) == [{"Status": "completed"}]
    assert not stand_in.updates(caller_sid)
    assert caller_log[-1]["reason"] == "caller_hangup"


def said(conn: LiveConnection) -> list[str]:
    """The commentary instructions a connection was given (what the agent was asked to say)."""
    return [
        str(e.get("content", ""))
        for e in conn.received
        if e.get("type") == "session.commentary.append"
    ]
