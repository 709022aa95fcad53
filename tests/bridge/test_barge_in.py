"""The barge-in guard on real audio, through the real webhook and WebSocket path in real time:
the agent says a 3.9 s sentence (its greeting, espeak-ng speech) and the caller, once they have
heard 1.5 s of it, says "mm-hm", "yeah" or "okay", coughs, or really interrupts ("wait, stop, I
have a question"); on some lines the caller's phone echoes the agent back. Fixtures:
tests/fixtures/README.md.

The guard decides on the caller's audio clock (20 ms frames), and the assertions do too: where
the pause and the resume were decided in the caller's audio (``caller_ms`` of the
``playback.paused``/``playback.resumed`` records), what the caller heard frame by frame. How
many milliseconds of wall time that took on this machine is bench/barge_in.py's business."""

from __future__ import annotations

import asyncio
import bisect
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from audio_checks import upsample_fft
from helpers import SILENCE, events, final_log, fixture_audio, within

from telephony.audio import FRAME_BYTES, ModelToCaller, ulaw_decode, ulaw_encode
from telephony.audio.echo_judge import EchoJudge
from telephony.audio.speech import SpeechDetector
from telephony.bridge.barge_in import ECHO_TAIL_S, RESUME_AFTER_MS, BargeInGuard
from telephony.bridge.turn_words import asks_for_the_turn, asks_to_stop, kind_of
from telephony.config import BargeInRules, TurnSettings
from telephony.simulate import Echo, Say, SimulationResult
from telephony.simulate.echo_paths import HYBRIDS, hybrid_path, room_path

AT_S = 1.5  # the caller speaks once they have heard this much of the agent's sentence
PAUSE_MS = 200  # BARGE_IN_PAUSE_MS, the default
FRAME_MS = 20
REPLY = fixture_audio("agent_reply.ulaw")
REPLY_24K = (
    np.rint(upsample_fft(np.frombuffer(ulaw_decode(REPLY), dtype="<i2").astype(np.float64), 3))
    .clip(-32768, 32767)
    .astype("<i2")
    .tobytes()
)


def reply_frames() -> list[bytes]:
    """The reply as the bridge sends it: transcoded, 20 ms frames, the last one padded."""
    down = ModelToCaller()
    ulaw = down.feed(REPLY_24K) + down.flush()
    ulaw += bytes([0xFF]) * (-len(ulaw) % FRAME_BYTES)
    return [ulaw[i : i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]


@dataclass
class Outcome:
    result: SimulationResult
    log: list[dict[str, Any]]
    connection: Any

    @property
    def truncations(self) -> list[dict[str, Any]]:
        return self.connection.truncations

    @property
    def said_ms(self) -> int:
        """Where the caller began speaking on their own audio clock (ms of audio sent)."""
        return round(self.result.said[0] * 1000)

    def pause_decided_ms(self) -> int:
        """Caller audio from the start of their words to the first pause the guard decided
        after it (the guard's reaction, on the audio clock)."""
        pauses = [p["caller_ms"] for p in events(self.log, "playback.paused")]
        return next(ms for ms in pauses if ms >= self.said_ms) - self.said_ms

    def paused_ms(self) -> list[int]:
        """Caller audio between each pause and its resume, as the guard decided them."""
        paused = events(self.log, "playback.paused")
        resumed = [r for r in events(self.log, "playback.resumed") if r["caller_ms"] is not None]
        return [r["caller_ms"] - p["caller_ms"] for p, r in zip(paused, resumed, strict=False)]

    def heard_ms(self, until: float | None = None) -> float:
        """How far into the first reply the caller heard (by call time ``until``, or in all):
        the played frames that continue it, up to the next reply (see :func:`follow_reply`)."""
        return follow_reply(self, until)[0] * 20

    def decided(self, clear: dict[str, Any]) -> float:
        """Call time a ``clear.sent`` record's clear was decided: for a pause's, when the pause
        read where the caller's ear was (its ``heard_ts``: a busy machine can stop the process
        between that read and the record, and packets that began meanwhile are heard but not
        in the position); else the record's time."""
        if clear.get("paused"):
            after = [p for p in events(self.log, "playback.paused") if p["ts"] >= clear["ts"]]
            if after and after[0]["item_id"] == clear["item_id"] and "heard_ts" in after[0]:
                return self.result.call_time(after[0]["heard_ts"])
        return self.result.call_time(clear["ts"])

    def decided_at(self, item_id: str) -> float:
        """Call time the last ``clear`` for ``item_id`` was decided (a pause, or the cut)."""
        sent = [c for c in events(self.log, "clear.sent") if c["item_id"] == item_id]
        return self.decided(sent[-1])

    def unconfirmed_ms(self, decided: float) -> float:
        """Audio the caller heard since the last resume before call time ``decided`` that the
        server could not know of yet. It holds the playback position at the pause point until
        Twilio echoes the first resumed packet (it never claims more than it knows played):
        all of it when no resumed echo was read by ``decided``. After that it counts on in
        real time from when it read the echo, so it is behind by how late that echo reached
        it after its audio played (the simulated Twilio sends echoes on its 20 ms frame
        ticks, and a busy event loop reads them later still): the least such delay of the
        resumed echoes read by ``decided``, as the tracker keeps the earliest start they give.
        0 without a resume."""
        resumes = [
            r
            for r in events(self.log, "playback.resumed")
            if self.result.call_time(r["ts"]) <= decided
        ]
        if not resumes:
            return 0.0
        last = resumes[-1]
        sent = {m["name"] for m in events(self.log, "mark.sent") if m["ts"] >= last["ts"]}
        due = self.result.mark_due
        late = [
            (self.result.call_time(m["ts"]) - due[m["name"]]) * 1000
            for m in events(self.log, "mark.played")
            if m["name"] in sent and self.result.call_time(m["ts"]) <= decided
        ]
        if late:
            return max(0.0, min(late))
        return max(0.0, self.heard_ms(decided) - float(last["from_ms"]))

    def in_transit(self) -> int:
        """Packets the caller heard while a ``clear`` was on its way: each began playing
        after the server decided the clear (:meth:`decided`) and before the simulated
        Twilio read it. On a busy machine the event loop is late; on a real line the trip to
        Twilio takes as long. A resume plays them again."""
        sent = [self.decided(c) for c in events(self.log, "clear.sent")]
        starts = [at for at, _ in self.result.played]
        return sum(
            bisect.bisect_left(starts, read) - bisect.bisect_left(starts, decided)
            for decided, read in zip(sent, self.result.clears, strict=False)
            if read > decided
        )

    def pauses(self) -> list[dict[str, Any]]:
        """The pauses and resumes, for a failure message."""
        return [e for e in self.log if e["event"] in ("playback.paused", "playback.resumed")]

    def gaps_s(self) -> list[float]:
        """Silences inside the reply as the caller heard it."""
        starts = [at for at, _ in self.result.played]
        return [b - a - 0.02 for a, b in itertools.pairwise(starts)]


async def call(
    live_server,
    caller_words: bytes | None,
    heard: str = "",
    *,
    echo: Echo | None = None,
    overrides: dict[str, Any] | None = None,
    at_s: float = AT_S,
) -> Outcome:
    """The agent's sentence as its greeting; the caller's ``caller_words`` once they heard
    ``at_s`` of it (the model transcribes them as ``heard``); the call ends 1.5 s after the
    agent falls silent."""
    script = [] if caller_words is None else [Say(caller_words, heard_s=at_s)]
    settings = {"greeting": "Hello.", **(overrides or {})}
    async with live_server(
        overrides=settings,
        reply=lambda turn: REPLY_24K if turn == 0 else REPLY_24K[: 24000 * 2 // 2],
        heard=lambda _n: heard,
        transcript_delay_s=0.2,
    ) as srv:
        result = await srv.call(SILENCE * 800, script=script, speed=1, tail_s=1.5, echo=echo)
        log = await final_log(srv, result.call_sid)
    return Outcome(result, log, srv.model.connections[0])


def follow_reply(outcome: Outcome, until: float | None = None) -> tuple[int, int]:
    """Walk what the caller heard along the first reply (the packets that began playing before
    call time ``until``, or all): (frames of it reached, packets slipped). Where a pause
    resumed, packets may be heard twice or not at all (a slip): one packet, since where the
    caller's ear was is known from mark echoes to within a packet, plus the packets heard
    while the clear was on its way (:meth:`Outcome.in_transit`), heard again. Raises
    AssertionError on audio lost or out of order, or more slipped than that; stops at the
    next reply."""
    expected = reply_frames()
    resumes = len(events(outcome.log, "playback.resumed"))
    budget = resumes + outcome.in_transit() if resumes else 0
    slips, i = 0, 0
    for at, frame in outcome.result.played:
        if i >= len(expected) or (until is not None and at >= until):
            break
        if frame == expected[i]:
            i += 1
            continue
        back = next((k for k in range(1, budget + 1) if i - k >= 0 and frame == expected[i - k]), 0)
        ahead = next(
            (k for k in range(1, budget + 1) if i + k < len(expected) and frame == expected[i + k]),
            0,
        )
        if back:  # heard again: packets back to this one
            slips += back
            i = i - back + 1
        elif ahead:  # skipped
            slips += ahead
            i += ahead + 1
        elif frame == expected[0]:
            break  # the next reply begins (it starts as the first one did)
        else:
            raise AssertionError(
                f"audio lost or out of order at frame {i} (budget {budget}): {outcome.pauses()}"
            )
    assert slips <= budget, f"{slips} packets slipped over {resumes} resumes (budget {budget})"
    return i, slips


CLOCKS_MS = 10.0  # how far the two clocks the bound mixes may disagree: half a packet (below)


def assert_truncated_where_heard(outcome: Outcome) -> None:
    """The model's item was truncated where the caller's ear was when the cut (or the pause
    it followed) was decided, within the packet being played; never past it. When that
    decision came right after a resume, the server knows only what the resumed echoes told
    it, so it may be behind by :meth:`Outcome.unconfirmed_ms` (count runs: a second pause
    40 ms into a resume, before its first echo, truncated at the first pause point, 1820 vs
    1860; and one with the echo read, 40 ms behind where that echo was read 18 ms after its
    audio played: 2 ms past that bound, judged then at the pause's record, not at its read)."""
    truncation = outcome.truncations[0]
    decided = outcome.decided_at(truncation["item_id"])
    heard, unconfirmed = outcome.heard_ms(decided), outcome.unconfirmed_ms(decided)
    end = truncation["audio_end_ms"]
    # CLOCKS_MS: the bound mixes the server's wall-clock records with the simulated Twilio's
    # monotonic clock and its frame ticks, which a busy machine runs late; stress runs (one
    # core busy) put truncations 0.12, 0.42, 0.63 and 1.7 ms under the bound, each exactly
    # on the packet it bounds (a wrong packet is 20 ms off). The clocks are mapped through
    # the closest of five read pairs (telephony.simulate.clock.clock_pair); that did not
    # remove the misses, so the rest is not the mapping (the ticks' lateness, not pinned down).
    # A fresh-clone CI run (2026-12-06, room echo: truncated at 2160 with the ear at 2200 and
    # 17 ms unconfirmed) missed a 2.5 ms allowance by 0.6 ms; it is now half a packet, under
    # the 20 ms a truncation one packet off would be
    low = heard - 20 - unconfirmed - CLOCKS_MS
    assert low <= end <= heard + 20, (heard, unconfirmed, outcome.pauses())


# The silence a resumed pause leaves in what the caller hears is the pause the guard decided
# (asserted on the audio clock) plus two trips through the event loops (the clear, then the
# resumed audio). Measured with bench/flaky.py, 10 runs of this module with one core kept busy:
# worst 0.XX s. This bound only catches a resume that never comes or waits for something slow
# (the transcript: up to TRANSCRIPT_WAIT_S, 4 s).
HEARD_GAP_BOUND_S = 1.0


def assert_reply_heard_whole(outcome: Outcome) -> None:
    """The first reply reached the caller whole: every frame in order, at most one packet
    slipped per resume, and no silence inside it longer than ``HEARD_GAP_BOUND_S``."""
    reached, _ = follow_reply(outcome)
    assert reached == len(reply_frames()), "the reply did not play to its end"
    gap = max(outcome.gaps_s()[: reached - 1])
    within("barge_in.heard_gap_s", gap, HEARD_GAP_BOUND_S, outcome.pauses())


@pytest.mark.parametrize(
    ("fixture", "heard", "kind"),
    [
        ("mmhm.ulaw", "Mm-hmm.", "backchannel"),
        ("yeah.ulaw", "Yeah.", "backchannel"),
        ("okay.ulaw", "Okay.", "backchannel"),
        ("noise_burst.ulaw", "", "noise"),
    ],
)
async def test_backchannels_and_noise_do_not_cut_the_agent_off(
    live_server, fixture: str, heard: str, kind: str
) -> None:
    words = fixture_audio(fixture)
    outcome = await call(live_server, words, heard)
    assert not outcome.truncations  # the model's view: its reply was heard in full
    assert_reply_heard_whole(outcome)
    # a pause, if any, lasted no longer on the caller's audio clock than the rest of their
    # words after the first PAUSE_MS, plus the quiet that resumes it (and one frame)
    words_ms = len(words) // 8
    assert all(
        ms <= words_ms - PAUSE_MS + RESUME_AFTER_MS + FRAME_MS for ms in outcome.paused_ms()
    ), (outcome.paused_ms(), outcome.pauses())
    suppressed = events(outcome.log, "barge_in.suppressed")
    assert [s["kind"] for s in suppressed] == [kind]
    # the short speech's item left the conversation, and nobody answered it
    assert outcome.connection.deleted == [suppressed[0]["item_id"]]
    assert len(outcome.connection.received("response.create")) == 1  # the greeting only
    assert outcome.log[-1]["suppressed_interruptions"][kind] == 1
    # at most one pause, taken back (the gap the caller heard is checked above)
    assert (
        len(events(outcome.log, "playback.paused"))
        == len(events(outcome.log, "playback.resumed"))
        <= 1
    )


async def test_a_real_interruption_cuts_the_agent_off_where_the_caller_heard_it(
    live_server,
) -> None:
    words = "Wait, stop, I have a question."
    guarded = await call(live_server, fixture_audio("wait_stop.ulaw"), words)
    model_decides = await call(
        live_server, fixture_audio("wait_stop.ulaw"), words, overrides={"barge_in_guard": False}
    )
    for outcome in (guarded, model_decides):
        assert outcome.result.clears and len(outcome.truncations) == 1
        assert_truncated_where_heard(outcome)
        responses = outcome.connection.responses  # then the agent answered the question
        assert len(responses) == 2 and responses[1]["status"] == "completed"
    assert events(guarded.log, "barge_in.interruption")[0]["why"] == "long_speech"
    # barge-in reaction, on the caller's audio clock: the guard paused the agent once it had
    # heard PAUSE_MS of the caller's words (the words' first frame or two may be quiet)
    assert PAUSE_MS <= guarded.pause_decided_ms() <= PAUSE_MS + 3 * FRAME_MS, guarded.pauses()
    assert model_decides.result.clears[0] > model_decides.result.said[0]
    assert guarded.log[-1]["metrics"]["barge_in_ms"]


# The agent's own voice on the caller's line, with the default settings (the echo judge, no
# canceller): a flat path 10 dB down, the worst G.168 hybrid loss (6 dB) at 300 ms, a
# speakerphone room with line noise (telephony/simulate/echo_paths.py); bench/echo.py runs the
# whole matrix
ROOM = Echo(gain_db=-12, delay_ms=60, noise_dbfs=-50, path=room_path(0.3))
ECHOES = [
    pytest.param(Echo(gain_db=-10, delay_ms=80), id="flat-10dB-80ms"),
    pytest.param(Echo(gain_db=-6, delay_ms=300, path=hybrid_path("D5")), id="hybrid-D5-6dB-300ms"),
    pytest.param(ROOM, id="room-T60-0.3s-12dB-noise"),
]


def assert_echo_was_no_turn(outcome: Outcome) -> None:
    """No interruption, the reply heard whole with at most one pause, and every item the
    model's VAD made of the echo deleted, never answered."""
    assert not outcome.truncations and not events(outcome.log, "barge_in.interruption")
    assert_reply_heard_whole(outcome)
    assert len(events(outcome.log, "playback.paused")) <= 1, outcome.pauses()
    connection = outcome.connection
    assert len(connection.deleted) == len(connection.speech_stopped_ms)
    assert len(connection.received("response.create")) == 1  # the greeting only


@pytest.mark.parametrize("echo", ECHOES)
async def test_the_agents_own_echo_does_not_interrupt_it(live_server, echo: Echo) -> None:
    outcome = await call(live_server, None, echo=echo)
    assert_echo_was_no_turn(outcome)
    assert events(outcome.log, "barge_in.suppressed")  # the model's VAD did hear it


async def test_echo_with_the_canceller_on(live_server) -> None:
    """ECHO_CANCELLATION=true (WebRTC AEC3 on what the model hears; the judge reads the raw
    line) keeps echo from interrupting."""
    echo = Echo(gain_db=-20, delay_ms=250)
    outcome = await call(live_server, None, echo=echo, overrides={"echo_cancellation": True})
    assert_echo_was_no_turn(outcome)


HYBRID = Echo(gain_db=-6, delay_ms=300, path=hybrid_path("D5"))


@pytest.mark.parametrize(
    ("echo", "at_s", "within_ms"),
    [
        pytest.param(ROOM, AT_S, 500, id="room"),
        # the agent's first words on a 6 dB line hybrid, before the judge has learned the line,
        # 300 ms after the echo began: the early echo fit hears the caller (before it: paused
        # 0.6-1.9 s late, honoured 3 of 9), paused 120-160 ms after the words began in 17 of
        # 18 runs on a busy machine; in the other it never heard them and the words honoured
        # them 2.9 s in. Live, its first 300 ms are the edge in docs/barge-in.md: the reaction
        # there is bench/echo.py's p95 and the offline line models' (exact placements), here
        # only the interruption honoured
        pytest.param(HYBRID, 0.6, None, id="hybrid-first-words"),
    ],
)
async def test_a_real_interruption_on_top_of_echo(
    live_server, echo: Echo, at_s: float, within_ms: int | None
) -> None:
    outcome = await call(
        live_server,
        fixture_audio("wait_stop.ulaw"),
        "Wait, stop, I have a question.",
        echo=echo,
        at_s=at_s,
    )
    assert outcome.result.clears and len(outcome.truncations) == 1
    assert_truncated_where_heard(outcome)
    # no pause before the caller spoke (over the hybrid's first words, at most the one a
    # reply may have: the fit converges on its 240th ms of echo), and the guard paused the
    # agent within 500 ms of the words' start on the caller's audio clock (the issue's target)
    paused = [p["caller_ms"] for p in events(outcome.log, "playback.paused")]
    before = [ms for ms in paused if ms < outcome.said_ms]
    assert len(before) <= (0 if within_ms else 1), outcome.pauses()
    if within_ms is not None:
        assert outcome.pause_decided_ms() <= within_ms, outcome.pauses()


class _Actions:
    """The call's side of the guard, noted."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.paused_ms: list[int] = []  # the caller's audio clock at each pause
        self.resumed_ms: list[int] = []  # and at each resume

    async def pause(self, speech_start: float, caller_ms: int) -> bool:
        self.done.append("pause")
        self.paused_ms.append(caller_ms)
        return True

    async def resume(self, caller_ms: int) -> None:
        self.done.append("resume")
        self.resumed_ms.append(caller_ms)

    async def interrupt(self) -> None:
        self.done.append("interrupt")

    async def respond(self) -> None:
        self.done.append("respond")

    async def forget(self, item_id: str) -> None:
        self.done.append("forget")


async def test_a_turn_that_begins_as_the_echo_window_closes_is_the_callers() -> None:
    """The caller answers 0.92 s after the agent's reply ended, on a line with echo: the
    model's VAD reports the item 60 ms before the 1 s echo window closes. Its sound after
    the window (where no echo can arrive) is the caller's too: the turn is answered, not
    deleted as echo. (A count run of the renewal test found it: the caller's turn was
    deleted, never answered, and the renewal waited for a reply that never came.)"""
    actions, records = _Actions(), []
    playing_until = len(REPLY) / 8000
    clock = {"at": 0.0}
    guard = BargeInGuard(
        BargeInRules(),
        actions,
        audible=lambda: clock["at"] < playing_until,
        agent_words=lambda: "",
        record=lambda event, **fields: records.append({"event": event, **fields}),
    )
    agent = np.frombuffer(ulaw_decode(REPLY), dtype="<i2")
    guard.reference.play(agent.tobytes(), 0.0)
    echo = SILENCE * 320 + ulaw_encode((agent.astype(np.int32) // 4).astype("<i2").tobytes())
    echo = echo[: len(REPLY)]  # -12 dB, 40 ms late, flat
    caller = fixture_audio("goforward.ulaw")
    loud = [
        i
        for i in range(0, len(caller) - FRAME_BYTES, FRAME_BYTES)
        if np.abs(np.frombuffer(ulaw_decode(caller[i : i + FRAME_BYTES]), "<i2")).max() > 2000
    ]
    caller = caller[loud[0] :]  # from its first word
    begins = playing_until + ECHO_TAIL_S - 0.08
    line = echo + SILENCE * round((begins - playing_until) * 8000) + caller + SILENCE * 4000
    word_frames = 0
    for n, i in enumerate(range(0, len(line) - FRAME_BYTES + 1, FRAME_BYTES)):
        clock["at"] = (n + 1) * FRAME_MS / 1000
        await guard.caller_frame(line[i : i + FRAME_BYTES], 0.0, clock["at"])
        if clock["at"] > begins:
            word_frames += 1
            if word_frames == 3:  # the model's VAD hears the caller start
                assert guard._echo.learned  # the line's echo path is known by now
                await guard.speech_started("item_caller")
    await guard.speech_stopped("item_caller")
    # the echo during the reply was the agent's own (suppressed as such); the turn was not
    suppressed = events(records, "barge_in.suppressed")
    assert all(r.get("item_id") != "item_caller" for r in suppressed), suppressed
    assert actions.done == ["respond"]


LONG_REPLY = fixture_audio("agent_long_reply.ulaw")
LONG_REPLY_WORDS = (  # the fixture's words (tests/fixtures/README.md)
    "I found your booking: a table for four on Friday at seven thirty, by the window, under "
    "the name Rivera. Please arrive ten minutes early. Shall I text you a confirmation?"
)


async def guard_over_a_reply(
    echo_db: float | None,
    caller_at_s: float | None,
    heard: str | None,
    caller: str = "wait_stop.ulaw",
    caller_db: float = 0.0,
    item_s: tuple[float, float | None] = (0.3, None),
    line_path: tuple[int, tuple[float, ...]] = (20, (1.0,)),
):
    """The guard, frame by frame on the caller's audio clock, over the agent's 9.9 s reply
    echoed flat, ``echo_db`` down (None: no echo), 20 ms late (or ``line_path``: a delay in
    ms and an echo path); the caller's ``caller`` fixture
    ("Wait, stop, I have a question."), ``caller_db`` from its level, ``caller_at_s`` into it
    (or no caller). The model's VAD (as OpenAI's, which hears echo as speech) makes one item
    of it all: it starts 0.3 s in, before the judge has learned the line, and stops as the
    reply's echo ends (or ``item_s``: from and to, seconds); the recogniser heard ``heard``
    (None: its transcript does not come while the reply plays).
    Returns what the guard did, its records, the guard and (frame, what the model heard)."""
    actions, records = _Actions(), []
    agent = np.frombuffer(ulaw_decode(LONG_REPLY), dtype="<i2").astype(np.float64)
    playing_until = len(agent) / 8000
    clock = {"at": 0.0}
    guard = BargeInGuard(
        BargeInRules(),
        actions,
        audible=lambda: clock["at"] < playing_until,
        agent_words=lambda: LONG_REPLY_WORDS,
        record=lambda event, **fields: records.append({"event": event, **fields}),
    )
    guard.reference.play(agent.astype("<i2").tobytes(), 0.0)
    delay_ms, path = line_path
    echo = np.convolve(agent, np.asarray(path))[: len(agent)]
    echo = echo * 10 ** (echo_db / 20) if echo_db is not None else np.zeros(len(agent))
    near = np.concatenate([np.zeros(delay_ms * 8), echo, np.zeros(8000)])
    if caller_at_s is not None:
        words = np.frombuffer(ulaw_decode(fixture_audio(caller)), "<i2") * 10 ** (caller_db / 20)
        at = int(caller_at_s * 8000)
        near[at : at + len(words)] += words
    line = ulaw_encode(np.clip(np.rint(near), -32768, 32767).astype("<i2").tobytes())
    passed = []  # (the caller's frame, what the model heard of it)
    for n, i in enumerate(range(0, len(line) - FRAME_BYTES + 1, FRAME_BYTES)):
        clock["at"] = (n + 1) * FRAME_MS / 1000
        frame = line[i : i + FRAME_BYTES]
        passed.append((frame, await guard.caller_frame(frame, 0.0, clock["at"])))
        if n + 1 == round(item_s[0] * 50):
            assert guard._echo.learned == (item_s[0] > 2.0)
            await guard.speech_started("item_1")
        if item_s[1] is not None and n + 1 == round(item_s[1] * 50):
            await guard.speech_stopped("item_1")
            if heard is not None:
                guard.transcript("item_1", heard)
        if clock["at"] >= playing_until + 0.06:
            break
    if item_s[1] is None:
        await guard.speech_stopped("item_1")
        guard.transcript("item_1", heard)
    await asyncio.sleep(0)
    await guard.close()
    return actions.done, records, guard, passed


@pytest.mark.parametrize("echo_db", [-20, -10, -6])
async def test_one_item_of_a_whole_replys_echo_is_no_turn(echo_db: float) -> None:
    """The model's VAD made one item of the whole reply's echo, begun before the judge had
    learned the line; a recogniser garbles echo (a bench run at 20 dB: "A table for
    four-on-five, seven, 30, ... under the name remarader", under the 60 % share of the
    agent's own words), so its words would make it a turn and the agent would answer itself.
    The judge's review of the frames before it learned makes it echo."""
    garbled = (  # as Whisper heard the echo in that run
        "you're working. A table for four-on-five, seven, 30, by the window under the name "
        "remarader. Clean the right and mid-it early. I'll ask you a confirmation."
    )
    done, records, *_ = await guard_over_a_reply(echo_db, None, garbled)
    assert done == ["forget"], records
    assert [r["item_id"] for r in events(records, "barge_in.suppressed") if "item_id" in r] == [
        "item_1"
    ]


async def pauses_on_a_line(
    gain_db: float,
    delay_ms: int,
    path: tuple[float, ...],
    caller_at_s: float | None,
    clip_dbfs: float | None = None,
    start_ms: float = 0,
    noise_dbfs: float | None = -50.0,
    misplaced_ms: float = 0.0,
) -> list[int]:
    """The guard alone over the agent's 9.9 s reply echoed through ``path`` (``gain_db``,
    ``delay_ms``; line noise at ``noise_dbfs``, None: none; ``clip_dbfs``: a loud handset's
    soft clipping, as :class:`telephony.simulate.Echo` makes it) with "Wait, stop, I have a
    question." ``caller_at_s`` into it (None: echo alone), the reply starting ``start_ms``
    into the caller's audio (its phase against their words and 20 ms frames) and placed
    ``misplaced_ms`` earlier on the guard's clock (the mark echoes' error): the caller_ms of
    each pause, up to the first once the caller spoke."""
    actions = _Actions()
    agent = np.frombuffer(ulaw_decode(LONG_REPLY), dtype="<i2").astype(np.float64)
    played = agent
    if clip_dbfs is not None:
        level = 32768 * 10 ** (clip_dbfs / 20)
        played = level * np.tanh(agent / level)
    echo = np.convolve(played, np.asarray(path))[: len(agent)] * 10 ** (gain_db / 20)
    near = np.concatenate([np.zeros(round((start_ms + delay_ms) * 8)), echo, np.zeros(8000)])
    if noise_dbfs is not None:
        near += np.random.default_rng(1).normal(0, 32768 * 10 ** (noise_dbfs / 20), len(near))
    if caller_at_s is not None:
        words = np.frombuffer(ulaw_decode(fixture_audio("wait_stop.ulaw")), "<i2")
        at = int(caller_at_s * 8000)
        near[at : at + len(words)] += words
    line = ulaw_encode(np.clip(np.rint(near), -32768, 32767).astype("<i2").tobytes())
    clock, playing_until = {"at": 0.0}, start_ms / 1000 + len(agent) / 8000
    guard = BargeInGuard(
        BargeInRules(),
        actions,
        audible=lambda: clock["at"] < playing_until,
        agent_words=lambda: LONG_REPLY_WORDS,
        record=lambda event, **fields: None,
    )
    guard.reference.play(agent.astype("<i2").tobytes(), (start_ms - misplaced_ms) / 1000)
    pauses = actions.paused_ms
    for n, i in enumerate(range(0, len(line) - FRAME_BYTES + 1, FRAME_BYTES)):
        clock["at"] = (n + 1) * FRAME_MS / 1000
        await guard.caller_frame(line[i : i + FRAME_BYTES], 0.0, clock["at"])
        if caller_at_s is not None and pauses and pauses[-1] > caller_at_s * 1000:
            break
    await guard.close()
    return pauses


FIRST_WORDS_LINES = {
    "room T60 0.3 s 12 dB": (-12, 60, room_path(0.3)),
    "flat 10 dB 150 ms": (-10, 150, (1.0,)),
    # G.168 hybrids at the worst echo return loss allowed: the early echo fit hears the caller
    # (D7-D9, longer paths, may need more than the 200 ms of echo before 0.5 s: 0.64-1.59 s)
    **{f"hybrid {m} 6 dB 300 ms": (-6, 300, hybrid_path(m)) for m in HYBRIDS if m < "D7"},
}


@pytest.mark.parametrize("at_s", [0.5, 0.52, 0.54, 0.55])
@pytest.mark.parametrize("name", FIRST_WORDS_LINES)
async def test_a_caller_over_the_first_words_on_an_echoing_line_pauses_it_soon(
    name: str, at_s: float
) -> None:
    """ "Wait, stop, I have a question." half a second into the reply, before the judge has
    learned the line but after the presence test found its echo: the agent pauses within
    300 ms of the words, at each of these onsets. Before, its short first word ("Wait,")
    made 160-180 ms of speech beyond the echo (the presence test lags a caller's onset by 2-3
    frames) and the pause waited for "stop": 610-710 ms at half of them. Over a 6 dB line
    hybrid the presence test alone heard the caller 0.7-1.9 s late or never (its window holds
    the loud echo too); the early echo fit (:mod:`telephony.audio.echo_fit`) hears them."""
    pauses = await pauses_on_a_line(*FIRST_WORDS_LINES[name], at_s)
    assert pauses and at_s * 1000 < pauses[0] <= at_s * 1000 + 300, pauses


async def guard_on_a_paused_line(
    gain_db: float,
    delay_ms: int,
    path: tuple[float, ...],
    caller_at_s: float,
    until_s: float,
    start_ms: int = 0,
) -> tuple[list[str], list[dict[str, Any]], int | None]:
    """The guard over the agent's reply on an echoing line (as :func:`pauses_on_a_line`),
    whose pauses stop what plays and so, ``delay_ms`` later, its echo; a resume plays on from
    where it stopped. Frame by frame to ``until_s`` of the caller's audio: what the guard did,
    its records and the caller_ms it interrupted the agent at (None: it did not)."""
    actions, records = _Actions(), []
    agent = np.frombuffer(ulaw_decode(LONG_REPLY), dtype="<i2").astype(np.float64)
    words = np.frombuffer(ulaw_decode(fixture_audio("wait_stop.ulaw")), "<i2")
    frames = round(until_s * 1000) // FRAME_MS
    samples = (frames + 1) * 160
    caller = np.zeros(samples + len(words) + int(caller_at_s * 8000))
    caller[int(caller_at_s * 8000) :][: len(words)] = words
    noise = np.random.default_rng(1).normal(0, 32768 * 10**-2.5, samples)
    h, taps, lag = np.asarray(path), len(path), delay_ms * 8
    pad = lag + taps + start_ms * 8
    played = np.zeros(pad + samples)  # what played on the caller's clock, from sample pad
    playing, at_sample, interrupted_ms = {"on": True}, 0, None
    guard = BargeInGuard(
        BargeInRules(),
        actions,
        audible=lambda: playing["on"],
        agent_words=lambda: LONG_REPLY_WORDS,
        record=lambda event, **fields: records.append({"event": event, **fields}),
    )
    for n in range(frames):
        start = n * FRAME_MS / 1000
        if actions.done[-1:] == ["pause"] and playing["on"]:
            playing["on"] = False
            guard.reference.stop(start + start_ms / 1000)
        elif actions.done[-1:] == ["resume"] and not playing["on"]:
            playing["on"] = True
        if playing["on"] and at_sample + 160 <= len(agent):
            chunk = agent[at_sample : at_sample + 160]
            at_sample += 160
            played[pad + n * 160 : pad + (n + 1) * 160] = chunk
            guard.reference.play(chunk.astype("<i2").tobytes(), start + start_ms / 1000)
        # what played delay_ms (and the path's taps) before this frame: zeros before the call
        end = pad - start_ms * 8 + n * 160 + 160 - lag
        near = 10 ** (gain_db / 20) * np.convolve(played[end - 160 - taps + 1 : end], h, "valid")
        near = near + caller[n * 160 : n * 160 + 160] + noise[n * 160 : n * 160 + 160]
        frame = ulaw_encode(np.clip(np.rint(near), -32768, 32767).astype("<i2").tobytes())
        await guard.caller_frame(frame, 0.0, start + FRAME_MS / 1000)
        if "interrupt" in actions.done and interrupted_ms is None:
            interrupted_ms = (n + 1) * FRAME_MS
    return actions.done, records, interrupted_ms


@pytest.mark.parametrize("start_ms", [0, 4, 10, 16])
@pytest.mark.parametrize("at_s", [0.6, 0.7])
@pytest.mark.parametrize("model", ["D3", "D5", "D6"])
async def test_a_caller_who_paused_the_agent_over_a_hybrids_first_words_is_heard_alone(
    model: str, at_s: float, start_ms: int
) -> None:
    """ "Wait, stop, I have a question." (1.8 s) over a 6 dB hybrid's first words (the reply
    ``start_ms`` into the caller's 20 ms frames) pauses the agent; once the echo of what
    played before the pause has passed (300 ms), the caller is on the line alone and their
    speech interrupts the reply by its length within 1.7 s of their first word (0.84-1.64 s
    here). Before, the judge's prior (echo of anything played in its 600 ms window) called
    them echo until that window emptied and a gap between their words resumed the pause under
    them: 1.3-1.9 s here, 7 of these 24 over 1.7 s or never; live, the guard heard 240-360 ms
    of the 1.8 s and the words decided 2.8-5 s in, or after the reply had ended (a second
    reply, nothing truncated: 2 of 6 runs of the call test below at 0.7 s)."""
    line = (-6, 300, hybrid_path(model))
    done, records, interrupted_ms = await guard_on_a_paused_line(*line, at_s, at_s + 2.0, start_ms)
    interruptions = [r for r in records if r["event"] == "barge_in.interruption"]
    assert done[:1] == ["pause"] and interrupted_ms is not None, (done, records)
    assert interruptions[0]["why"] == "long_speech", records
    assert interrupted_ms - at_s * 1000 <= 1700, (interrupted_ms, done)
    assert done.count("resume") <= 1, done


@pytest.mark.parametrize("start_ms", [0, 10, 22, 30, 40])
async def test_a_short_first_word_over_a_loud_handsets_echo_pauses_it(start_ms: int) -> None:
    """ "Wait, stop, I have a question." 3 s into the reply over a loud handset (soft
    clipping at -12 dBFS, a T60 0.3 s room, 6 dB, 60 ms), the judge long since trusting the
    line: the agent pauses by the caller's first word at these playout phases, and the echo
    alone pauses nothing. There were two modes, as ``bench/echo.py``'s loud-handset double
    talk showed (about 240 ms, now and then 622 ms): "Wait," is 240 ms and fades from -18
    to -33 dBFS while a syllable of the echo rises to -25 dBFS, so its last frames sit at the
    judge's threshold; at some phases only 180 of the 200 ms a pause needs counted, and the
    pause came on "stop" (3620-3660 ms), whose first 190 ms the loud echo masks (21 of 32
    phases, 0-62 ms in 2 ms steps). The frames next to the caller's word where the judge
    finds some sound beyond the echo now count toward the pause (``WordEdges``): "Wait,"
    pauses the agent at 3200-3220 ms. The words, not the edges, still decide a turn (the
    cough test below)."""
    line = (-6, 60, room_path(0.3))
    pauses = await pauses_on_a_line(*line, 3.0, clip_dbfs=-12, start_ms=start_ms)
    assert pauses and 3000 < pauses[0] <= 3240, pauses
    assert await pauses_on_a_line(*line, None, clip_dbfs=-12, start_ms=start_ms) == []


@pytest.mark.parametrize("start_ms", [0, 6])
@pytest.mark.parametrize(
    ("line", "at_s"),
    [
        pytest.param((-6, 300, hybrid_path("D2")), 3.2, id="hybrid-D2-3.2s"),
        pytest.param((-6, 300, hybrid_path("D4")), 3.2, id="hybrid-D4-3.2s"),
        pytest.param((-6, 300, hybrid_path("D6")), 3.0, id="hybrid-D6-3.0s"),
        pytest.param((-6, 300, hybrid_path("D6")), 3.2, id="hybrid-D6-3.2s"),
        pytest.param((-6, 20, (1.0,)), 3.1, id="flat-6dB-20ms-3.1s"),
    ],
)
async def test_a_short_first_word_over_a_hybrids_loud_echo_pauses_it(
    line: tuple[float, int, tuple[float, ...]], at_s: float, start_ms: int
) -> None:
    """ "Wait, stop, I have a question." over the loudest echo a network may return (6 dB),
    the judge trusting the line: "Wait," is heard beyond the echo in only 5-7 frames (100-140
    ms), its onset and tail masked, and the pause came on "stop", 620-720 ms after the words
    began, at these onsets (over the eight G.168 hybrids and flat 6 dB 20 ms echo, the words
    3.0, 3.1 and 3.2 s in, the reply 0-19 ms into a frame and placed 0-12 ms early, no line
    noise: 624 of 2160 runs over 500 ms; the bench's D5 double talk at 3.0 s is a lucky
    onset). Now the word's voiced frames next to it with some sound beyond the echo count
    toward the pause (two before, four after): 0 of 2160 over 500 ms, p95 at most 260 ms."""
    pauses = await pauses_on_a_line(*line, at_s, start_ms=start_ms)
    assert pauses and at_s * 1000 < pauses[0] <= at_s * 1000 + 300, pauses


@pytest.mark.parametrize("start_ms", [12, 14])
async def test_a_hybrids_echo_whose_first_frame_held_back_learning_pauses_nothing(
    start_ms: int,
) -> None:
    """G.168 hybrid D7 at 6 dB, 300 ms, no line noise, the reply placed 4 ms early (the mark
    echoes' error): at these playout phases the echo's first loud frame, before the presence
    test found it, was judged the caller's, which held the path's learning back 300 ms; the
    path learned from the agent's voice after that was trusted (its check passed) yet called
    20-60 later frames of the echo alone the caller's, and paused the reply once or twice
    (``bench/echo.py``'s D7 cell, 1 run in 5). A trusted path now takes what the check's
    replay of the frames kept learned on to, and one more replay's: no pause."""
    line = (-6, 300, hybrid_path("D7"))
    assert (
        await pauses_on_a_line(*line, None, start_ms=start_ms, noise_dbfs=None, misplaced_ms=4)
        == []
    )


@pytest.mark.parametrize(("model", "start_ms"), [("D5", 30), ("D5", 40), ("D4", 36), ("D2", 24)])
async def test_a_caller_in_a_quiet_hybrids_first_echo_pauses_it_soon(
    model: str, start_ms: int
) -> None:
    """ "Wait, stop, I have a question." 0.5 s in over a 6 dB G.168 hybrid at 300 ms on a quiet
    line (no line noise, as ``bench/echo.py``'s hybrid cells), the reply 24-40 ms into the
    caller's audio (the bench's starts 30-50 ms): the caller begins 160-176 ms after the
    echo, where the early echo fit had heard 4-5 loud frames of it and needed 5 to converge,
    so it learned the caller's voice and the pause came 0.7-1.9 s late (the bench's early
    hybrid cell, slow in about half its runs). The echo's quieter frames count toward
    converging too (:meth:`~telephony.audio.echo_delay.EchoDelay.heard`): paused within 200
    ms."""
    line = (-6, 300, hybrid_path(model))
    pauses = await pauses_on_a_line(*line, 0.5, start_ms=start_ms, noise_dbfs=None)
    assert pauses and 500 < pauses[0] <= 700, pauses


@pytest.mark.parametrize("start_ms", [10, 12])
async def test_a_quiet_rooms_echo_alone_pauses_nothing(start_ms: int) -> None:
    """A speakerphone room (T60 0.2 s, 12 dB, 60 ms) on a quiet line (no line noise: a
    digital leg): the early echo fit passed for having learned the room's path over its first
    loud frames of echo, then called the next ones the caller's, each leaving 11-42 times its
    power unexplained, and paused the agent 0.64-0.72 s in at 15 of 30 playout phases (0-58
    ms). Such a frame now unsettles the fit (``echo_fit.OVERSHOOT``): no pause."""
    line = (-12, 60, room_path(0.2))
    assert await pauses_on_a_line(*line, None, start_ms=start_ms, noise_dbfs=None) == []


@pytest.mark.parametrize(
    ("gain_db", "delay_ms", "path"),
    [
        pytest.param(-12, 60, room_path(0.2), id="room-0.2s"),
        pytest.param(-12, 60, room_path(0.3), id="room-0.3s"),
        pytest.param(-12, 60, room_path(0.6), id="room-0.6s"),
        *[pytest.param(-6, 300, hybrid_path(m), id=f"hybrid-{m}") for m in HYBRIDS],
        pytest.param(-6, 20, (1.0,), id="flat-6dB-20ms"),
        pytest.param(-10, 450, (1.0,), id="flat-10dB-450ms"),
    ],
)
async def test_echo_alone_never_pauses_the_agent(
    gain_db: float, delay_ms: int, path: tuple[float, ...]
) -> None:
    """The counterpart: the whole reply's echo alone, through the guard, pauses nothing
    (the shorter pause before the judge learns the line included)."""
    assert await pauses_on_a_line(gain_db, delay_ms, path, None) == []


@pytest.mark.parametrize("echo_db", [-20, -10])
async def test_a_caller_who_spoke_before_the_judge_learned_is_heard(echo_db: float) -> None:
    """The same item with the caller's "Wait, stop, I have a question." 0.4 s into the reply,
    before the judge has learned the line: the review finds the caller's sound in it, and it
    is a turn."""
    done, records, *_ = await guard_over_a_reply(echo_db, 0.4, "Wait, stop, I have a question.")
    assert "respond" in done and "forget" not in done, records


@pytest.mark.parametrize("caller_db", [0, -6, -10])
async def test_a_quiet_caller_over_the_agent_with_no_echo_is_heard(caller_db: float) -> None:
    """No echo on the line (the README quickstart's call): the caller, quieter than the agent,
    says "Go forward ten meters." 0.4 s into its reply, before the judge has learned the line.
    The presence test finds no echo in their sound, so the judge's prior does not hold it and
    nothing of it teaches the path (before the test, their frames looked like echo under the
    prior and taught it, and only the path's check saved them): the item is a turn by its
    sound, and none of the caller's frames reaches the model as silence."""
    done, records, guard, passed = await guard_over_a_reply(
        None, 0.4, "Go forward ten meters.", caller="goforward.ulaw", caller_db=caller_db
    )
    assert "respond" in done and "forget" not in done, records
    assert guard._echo.judge.restarts == 0 and not guard._echo.judge.echo_found
    assert not [r for r in events(records, "barge_in.suppressed") if r.get("item_id")], records
    detect = SpeechDetector()
    words = [(sent, heard) for sent, heard in passed if detect(ulaw_decode(sent))]
    assert len(words) >= 40 and all(sent == heard for sent, heard in words)  # none gated


async def test_a_cough_over_echo_that_a_recogniser_made_words_of_is_no_turn() -> None:
    """A cough (a 0.25 s burst of brown noise) 4 s into the reply, over its echo 10 dB down,
    the line's echo learned: the model's VAD makes an item of it and the recogniser makes a
    word of it (a bench run: "Open.", and the reply was cut). Too little of it was speech
    beyond the echo to pause the agent by itself, so it is noise: no interruption, the item
    deleted, the reply heard whole. Counting a word's fading tail toward a pause (a short
    "Wait," over a loud handset needs it) lets its 180 ms and a weaker frame within pause the
    agent once (at 4.22 s), resumed when the line falls quiet (here at 4.72 s: this line goes
    on echoing the reply through the pause; on a call the echo stops with it)."""
    done, records, guard, _ = await guard_over_a_reply(
        -10, 4.0, "Open.", caller="noise_burst.ulaw", item_s=(4.0, 4.6)
    )
    assert done in (["forget"], ["pause", "resume", "forget"]), records
    actions = guard._actions
    assert all(4000 < ms < 4600 for ms in actions.paused_ms), actions.paused_ms
    (suppressed,) = [r for r in events(records, "barge_in.suppressed") if r.get("item_id")]
    assert suppressed["kind"] == "noise" and suppressed["speech_ms"] < BargeInRules().pause_ms


async def test_a_short_word_over_echo_that_paused_the_agent_decides_by_its_words() -> None:
    """The counterpart: a short word ("yeah", 0.4 s of speech) over the same echo pauses the
    agent; the recogniser heard "Stop.", which is not a backchannel: a real turn (an
    interruption by its words, then an answer)."""
    done, records, *_ = await guard_over_a_reply(
        -10, 4.0, "Stop.", caller="yeah.ulaw", item_s=(4.0, 4.8)
    )
    assert "pause" in done and "respond" in done and "forget" not in done, records
    assert [r["why"] for r in events(records, "barge_in.interruption")] == ["words"]


@pytest.mark.parametrize("echo_db", [-10, -6])
async def test_a_yeah_over_the_first_words_echo_is_no_turn_whatever_the_words(
    echo_db: float,
) -> None:
    """A "yeah" 0.5 s into the reply, over its echo, before the judge has learned the line:
    the model's VAD made one item of the echo and the word (0.3 s to 1.9 s), and a
    recogniser read it as the echo's words, garbled ("I am here fucking" for a "yeah" over
    "I found your booking": a bench/echo.py run cut the reply for it). The line's echo was
    found and the caller's own speech in the item stayed under ``min_speech_ms``: its words
    are mostly the echo's, so it is short speech, not a turn."""
    done, records, guard, _ = await guard_over_a_reply(
        echo_db, 0.5, "I am here fucking", caller="yeah.ulaw", item_s=(0.3, 1.9)
    )
    assert guard._echo.judge.echo_found
    assert "respond" not in done and done[-1] == "forget", records
    (suppressed,) = [r for r in events(records, "barge_in.suppressed") if r.get("item_id")]
    assert suppressed["kind"] == "short_speech"
    assert suppressed["speech_ms"] < BargeInRules().min_speech_ms


async def test_an_item_begun_as_a_hybrids_echo_arrives_is_judged_by_what_was_found_by_its_end() -> (
    None
):
    """A "yeah" 0.5 s into the reply over a 6 dB line hybrid's echo (G.168 D5, 300 ms, the
    bench/echo.py cell), the model's VAD beginning its item as the echo arrives (320 ms in),
    before the presence test has found the echo: by the item's end it has, and the caller's
    sound beyond it stayed under ``pause_ms``, so its words are the echo's: short speech.
    (Asked at the item's start, the words decided: "I'm your walking." cut the reply in 2
    of 5 bench runs of that cell.)"""
    done, records, guard, _ = await guard_over_a_reply(
        -6,
        0.5,
        "I'm your walking.",
        caller="yeah.ulaw",
        item_s=(0.32, 1.76),
        line_path=(300, hybrid_path("D5")),
    )
    assert guard._echo.judge.echo_found
    assert "respond" not in done and done[-1] == "forget", records
    (suppressed,) = [r for r in events(records, "barge_in.suppressed") if r.get("item_id")]
    assert suppressed["kind"] == "short_speech"
    assert suppressed["speech_ms"] < BargeInRules().pause_ms


@pytest.mark.parametrize("echo_db", [-10, -6])
async def test_an_item_begun_as_the_echo_arrives_with_a_pause_of_speech_decides_by_words(
    echo_db: float,
) -> None:
    """The counterpart: an item begun as the echo arrives (20 ms in), before the presence
    test found it, with enough of the caller's speech beyond the echo to pause the agent
    (a "yeah": 340-400 ms counted here): its words decide, and a misheard request with no
    turn word in it ("I have a question" over a hybrid's echo, as a recogniser heard it in a
    bench run where the short-speech rule then dropped the interruption) is a turn."""
    heard = "I can request you. It will for forum, right? Yes, yes."
    done, records, guard, _ = await guard_over_a_reply(
        echo_db, 0.5, heard, caller="yeah.ulaw", item_s=(0.02, 1.9)
    )
    assert guard._echo.judge.echo_found and not asks_for_the_turn(heard)
    assert "respond" in done and "forget" not in done, records
    (why,) = events(records, "barge_in.interruption")
    assert why["why"] == "words" and why["speech_ms"] >= BargeInRules().pause_ms


@pytest.mark.parametrize("heard", ["I'm not your walking.", "I can't. You're a workhead."])
async def test_a_turn_word_a_recogniser_made_of_a_hybrids_echo_is_no_turn(heard: str) -> None:
    """A "yeah" 0.5 s into the reply over a 6 dB line hybrid's echo (G.168 D5, 300 ms: the
    bench/echo.py cell), the item begun on the echo's first syllables: the recogniser made
    turn words of the echo of "I found your booking" (two bench runs in ten cut the reply
    for them). The caller's sound beyond the echo was too short to pause the agent, so the
    words are the echo's: short speech."""
    done, records, guard, _ = await guard_over_a_reply(
        -6, 0.5, heard, caller="yeah.ulaw", item_s=(0.36, 1.76), line_path=(300, hybrid_path("D5"))
    )
    assert guard._echo.judge.echo_found and asks_for_the_turn(heard)
    assert "respond" not in done and done[-1] == "forget", records
    (suppressed,) = [r for r in events(records, "barge_in.suppressed") if r.get("item_id")]
    assert suppressed["kind"] == "short_speech"
    assert suppressed["speech_ms"] < BargeInRules().pause_ms


async def test_a_request_to_stop_barely_heard_over_a_hybrids_first_words_is_a_turn() -> None:
    """The counterpart on the same line: a caller's "Wait, stop, I have a question." said as
    the hybrid's echo began, which the judge could not yet tell from it (120 ms counted in a
    bench run; the "yeah" here gives as little), came back from the recogniser as "I can
    make a way to hold on.": a word that asks the agent to stop (``turn_words.STOP_WORDS``,
    which no reading of the echo has made) makes it a turn, however little was heard."""
    heard = "I can make a way to hold on."
    done, records, guard, _ = await guard_over_a_reply(
        -6, 0.5, heard, caller="yeah.ulaw", item_s=(0.32, 1.76), line_path=(300, hybrid_path("D5"))
    )
    assert guard._echo.judge.echo_found and asks_to_stop(heard)
    assert "respond" in done and "forget" not in done, records
    (why,) = events(records, "barge_in.interruption")
    assert why["why"] == "words" and why["speech_ms"] < BargeInRules().pause_ms
    assert not any(
        asks_to_stop(t) for t in ("I'm not your walking.", "I can't. You're a workhead.")
    )


@pytest.mark.parametrize("echo_db", [-10, -6])
async def test_a_short_sound_over_the_first_words_echo_heard_as_a_request_is_a_turn(
    echo_db: float,
) -> None:
    """The same item, its words a request ("Wait, stop, I have a question."): the caller's
    speech beyond the echo stayed under ``min_speech_ms`` (the judge, not yet learned, counts
    little of a caller over loud echo: 480 ms of "Wait, stop, I have a question." over a 6 dB
    hybrid, in a real-time test under load), but words no reading of the echo has made
    ("wait", "stop": ``turn_words.TURN_WORDS``) make it a turn."""
    done, records, guard, _ = await guard_over_a_reply(
        echo_db, 0.5, "Wait, stop, I have a question.", caller="yeah.ulaw", item_s=(0.3, 1.9)
    )
    assert guard._echo.judge.echo_found
    assert "respond" in done and "forget" not in done, records
    assert [r["why"] for r in events(records, "barge_in.interruption")] == ["words"]
    assert asks_for_the_turn("Hold on, why?") and not asks_for_the_turn("I am here fucking")
    assert not asks_for_the_turn("I think you're walking, okay?") and not asks_for_the_turn(None)


async def test_a_short_word_over_the_first_words_with_no_echo_decides_by_its_words() -> None:
    """The counterpart on a line with no echo: the item holds the caller's sound alone, so
    its words are theirs; "Stop." is a turn (an interruption by its words)."""
    done, records, guard, _ = await guard_over_a_reply(
        None, 0.5, "Stop.", caller="yeah.ulaw", item_s=(0.3, 1.9)
    )
    assert not guard._echo.judge.echo_found
    assert "respond" in done and "forget" not in done, records
    assert [r["why"] for r in events(records, "barge_in.interruption")] == ["words"]


@pytest.mark.parametrize("echo_db", [None, -10], ids=["no-echo", "flat-10dB"])
async def test_an_mm_hm_a_recogniser_made_function_words_of_is_no_turn(
    echo_db: float | None,
) -> None:
    """A real "mm-hm" (0.5 s) 4 s into the reply, under the agent; the recogniser made
    words of it that carry no request ("And I can.", a bench run with no echo, which cut the
    reply): short speech the agent went on past, of function words only, is noise; the item
    is deleted and the agent goes on."""
    done, records, *_ = await guard_over_a_reply(
        echo_db, 4.0, "And I can.", caller="mmhm.ulaw", item_s=(4.0, 4.8)
    )
    assert "forget" in done and "respond" not in done, records
    (suppressed,) = [r for r in events(records, "barge_in.suppressed") if r.get("item_id")]
    assert suppressed["kind"] == "noise" and suppressed["transcript"] == "And I can."
    assert not events(records, "barge_in.interruption")


@pytest.mark.parametrize("heard", ["No.", "What?", "Hold on.", "I can't."])
async def test_a_short_word_that_is_a_request_alone_interrupts(heard: str) -> None:
    """The counterpart, with no echo: the same length of speech heard as a word that is a
    request on its own (a negation, a question word, "hold on") is a real turn."""
    done, records, *_ = await guard_over_a_reply(
        None, 4.0, heard, caller="yeah.ulaw", item_s=(4.0, 4.8)
    )
    assert "respond" in done and "forget" not in done, records
    assert [r["why"] for r in events(records, "barge_in.interruption")] == ["words"]


async def test_an_echo_judge_that_fails_leaves_the_caller_heard(monkeypatch) -> None:
    """The echo judge raises on its 100th frame, before the caller speaks (a bug, a frame it
    cannot take): that is logged once with the caller's audio clock, every later frame counts
    as the caller's (the guard as before the echo work), and the call goes on: "Wait, stop, I
    have a question." at 3 s over echo 10 dB down still interrupts the agent. (Before, the
    exception left the guard and ended the call.)"""
    frame = EchoJudge.frame
    calls = itertools.count()

    def failing(self: EchoJudge, near: bytes, far: bytes) -> bool:
        if next(calls) >= 100:
            raise RuntimeError("judge broke")
        return frame(self, near, far)

    monkeypatch.setattr(EchoJudge, "frame", failing)
    done, records, guard, passed = await guard_over_a_reply(
        -10, 3.0, "Wait, stop, I have a question."
    )
    failed = events(records, "barge_in.echo_failed")
    assert [r["error"] for r in failed] == ["RuntimeError: judge broke"], records
    at = failed[0]["caller_ms"] // 20  # the frame it failed on, before the caller spoke
    assert 20 < at < 150 and guard._echo.failed and not guard._echo.learned
    assert "interrupt" in done and "forget" not in done, records
    assert all(sent == heard for sent, heard in passed[at:])  # nothing gated after it


def test_kind_of_reads_a_short_items_words() -> None:
    """The word check alone: function words only are noise when the item was short under
    the agent, a turn when it was not (the agent had finished: "And I can." answers it);
    backchannels with function words, short, are listening."""
    rules = TurnSettings().barge_in_rules()
    assert rules is not None
    backchannels = rules.backchannels
    agent = "Shall I text you a confirmation?"
    assert kind_of("And I can.", backchannels, agent, short=True) == "noise"
    assert kind_of("Here, but.", backchannels, agent, short=True) == "noise"
    assert kind_of("And I can.", backchannels, agent) is None
    assert kind_of("Here, but.", backchannels, agent, short=False) is None
    # a "yeah" and the echo after it ("Yeah, but..."), short: listening; said after the agent
    # finished, a turn
    assert kind_of("Yeah, but...", backchannels, agent, short=True) == "backchannel"
    assert kind_of("Okay, so I", backchannels, agent, short=True) == "backchannel"
    assert kind_of("Yeah, but...", backchannels, agent) is None
    for request in ("No.", "Wait.", "Stop it.", "Why?", "I don't.", "Yeah, no.", "Okay, stop."):
        assert kind_of(request, backchannels, agent, short=True) is None, request
    assert kind_of("", backchannels, agent, short=True) == "noise"
    assert kind_of(None, backchannels, agent) == "short_speech"


@pytest.mark.parametrize(
    ("echo", "at_s"),
    [
        pytest.param(ROOM, 3.0, id="room"),  # as bench/echo.py
        # the early echo fit's verdicts wait after the resume (what played moved on the clock)
        pytest.param(HYBRID, 0.5, id="hybrid-first-words"),
    ],
)
async def test_a_yeah_over_echo_does_not_cut_the_agent_off(
    live_server, echo: Echo, at_s: float
) -> None:
    """A "yeah" (0.23 s) over a speakerphone room's echo of the reply, or over a 6 dB line
    hybrid's of its first words: listening, not a turn; the reply is heard whole (a
    bench/echo.py run cut it over the room: 600 ms of "speech" counted around the word)."""
    outcome = await call(live_server, fixture_audio("yeah.ulaw"), "Yeah.", echo=echo, at_s=at_s)
    fields = ("event", "why", "kind", "speech_ms", "transcript", "caller_ms")
    said = [{k: r.get(k) for k in fields} for r in outcome.log if r["event"].startswith("barge_in")]
    assert not events(outcome.log, "barge_in.interruption"), said  # pytest -vv shows them all
    assert not outcome.truncations
    assert_reply_heard_whole(outcome)


def test_a_words_edges_count_only_next_to_a_word() -> None:
    """``WordEdges``, frame by frame (speech beyond the echo ``S``, an edge ``e``, neither
    ``.``): the edges just before a word of three speech frames in a row count (at most
    two, once the word is a word; a quiet frame ends them) and those among the four frames
    after it; a stray speech frame or two makes no word, and edges next to it count for
    nothing."""
    from telephony.bridge.barge_in_items import WordEdges

    def credits(frames: str) -> list[int]:
        edges = WordEdges()
        return [edges.frame(f == "S", f == "e") for f in frames]

    assert credits("eeeSSSeeeee.") == [0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 0, 0]
    assert credits("eSeSSS") == [0, 0, 0, 0, 0, 2]  # an edge between stray speech and a word
    assert credits("eSSe.eSSe.") == [0] * 10  # no three in a row: no word, no edges
    assert credits("SSSSSe.e.e") == [0, 0, 0, 0, 0, 1, 0, 1, 0, 0]  # four frames of tail
    assert credits("SSS.eeSSS") == [0, 0, 0, 0, 1, 1, 0, 0, 0]  # a tail is no next word's head
    assert credits("SSS.....eeSSS")[-1] == 2
    assert credits("ee.SSS") == [0] * 6  # a quiet frame between: not the word's onset


@pytest.mark.parametrize(("delay_ms", "stop_s"), [(330, 2.7), (340, 2.7), (340, 3.3)])
async def test_a_caller_in_a_hybrids_first_echo_whose_words_come_late_is_a_turn(
    delay_ms: int, stop_s: float
) -> None:
    """ "Wait, stop, I have a question." 0.5 s into the reply over a 6 dB G.168 D5 hybrid
    whose echo began 160-180 ms before (the bench's early hybrid cell, on the edge the early
    echo fit cannot hear a caller over): barely heard under the prior, paused late, the
    model's VAD item (0.32-2.7 s) held 120 ms of the caller's speech, and its transcript came
    5 s after it ended (a recogniser under load), past the 4 s it is waited for: dropped as
    short speech, the question lost (a bench run, 2026-12-07). The judge learns the line at
    2.9-3.1 s; its review of the frames before finds 620-660 ms of the caller's sound in the
    item, and that is a real turn: the reply is interrupted and the turn answered. So is
    such an item that ends after the judge learned (3.3 s), by the same count."""
    done, records, *_ = await guard_over_a_reply(
        -6, 0.5, None, item_s=(0.32, stop_s), line_path=(delay_ms, hybrid_path("D5"))
    )
    assert "interrupt" in done and "respond" in done, (done, records)
    why = [r.get("why") for r in records if r["event"] == "barge_in.interruption"]
    assert why == ["review"], records
