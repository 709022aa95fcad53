"""Call logs hold phone numbers and transcripts: created owner-only, in an owner-only folder."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from helpers import wait_for, within

from telephony.observability.call_log import (
    FLUSH_EVERY_S,
    CallLog,
    CallLogs,
    read_call_log,
    safe_call_id,
    seconds_between,
)
from telephony.replay.facts import call_facts


def test_call_logs_are_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "calls"
    with CallLogs(directory, "i-1").open("CA" + "1" * 32) as log:
        record = log.write("webhook", **{"from": "+15550001111"})
    assert record["instance"] == "i-1"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("call_id", ["CA1\n", "../x", "", "é", "a" * 81])
def test_unsafe_call_ids_are_refused_as_file_names(call_id: str) -> None:
    with pytest.raises(ValueError):
        safe_call_id(call_id)


async def test_records_reach_the_file_within_a_second_and_all_at_close(tmp_path: Path) -> None:
    """Records are batched into the file (not one write each) but never wait more than
    FLUSH_EVERY_S: a process that dies loses at most the last second."""
    log = CallLog(tmp_path, "CA" + "1" * 32)
    log.write("first")  # the first record of the second is written at once
    log.write("model.audio", bytes=4800)
    log.write("mark.sent", name="m1")
    assert [r["event"] for r in read_call_log(log.path)] == ["first"]
    t0 = time.monotonic()
    events = ["first", "model.audio", "mark.sent"]
    await wait_for(lambda: [r["event"] for r in read_call_log(log.path)] == events, 5)
    # by the flush timer (a wall-clock figure: the timer's own lateness on a busy loop)
    within("call_log.flush_s", time.monotonic() - t0, FLUSH_EVERY_S + 0.5)
    log.write("call.end", reason="caller_hangup", text="¿qué?")
    log.close()
    records = read_call_log(log.path)
    assert records[-1]["event"] == "call.end" and records[-1]["text"] == "¿qué?"


def test_a_wall_clock_step_mid_call_does_not_move_the_call_s_times(tmp_path: Path) -> None:
    """The wall clock can be stepped mid-call (NTP; a paused virtual machine: once, 15 s, in a
    test run, which made a replayed call's turn look 15 s late). Times read from a log go by the
    monotonic clock of the instance that wrote both records, and by wall clock only between two
    machines (or for logs written before ``mono`` existed)."""
    with CallLog(tmp_path, "CA" + "2" * 32, instance="i-1") as log:
        log.write("stream.start", stream_sid="MZ1")
        log.write("speech.stopped")
        log.write("response.started", response_id="r1")
        log.write("model.audio", response_id="r1", item_id="i1", bytes=4800)
        log.write("dtmf", digit="5")
    records = read_call_log(log.path)
    start, *rest = records
    truth = [seconds_between(start, r) for r in rest]
    assert all(0 <= t < 5 for t in truth) and truth == sorted(truth)
    for r in rest:
        r["ts"] += 15.0  # the step, between stream.start and the caller's turn
    assert [seconds_between(start, r) for r in rest] == truth
    facts = call_facts(records)
    turn = facts.turns[1]
    assert turn.stopped_at_ms == round(truth[0] * 1000, 1)
    assert turn.responses[0].audio_at_ms == round(truth[2] * 1000, 1)
    assert facts.dtmf == [(round(truth[3], 2), "5")]
    # another machine's record (its own monotonic clock), and an old log: by wall clock
    other = {**rest[0], "instance": "i-2", "mono": 1.0}
    assert seconds_between(start, other) == rest[0]["ts"] - start["ts"]
    old_start, old = ({k: v for k, v in r.items() if k != "mono"} for r in (start, rest[0]))
    assert seconds_between(old_start, old) == rest[0]["ts"] - start["ts"]
