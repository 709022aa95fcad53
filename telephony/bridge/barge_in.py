"""Barge-in we decide: the agent's own echo, "mm-hm", a cough or line noise do not cut it off.

With the guard on, the model neither cancels its reply when its VAD hears speech
(``interrupt_response: false``) nor answers by itself at the end of it (``create_response:
false``); this module decides both, from what only the bridge knows: every byte of the agent's
audio and, from the mark echoes, when the caller heard it.

Per caller frame while the agent's audio plays (or a pause holds it):

1. **Echo.** The frame is paired with what was playing when it was captured
   (:attr:`BargeInGuard.reference`, a :class:`~telephony.audio.echo.PlayoutReference` the
   outbound side feeds on the caller's audio clock). The echo judge
   (:class:`~telephony.audio.echo_judge.EchoJudge`, on by default) learns the call's echo
   path in band powers and says whether the frame holds sound beyond the agent's own echo;
   only such sound counts as the caller's. With ``ECHO_CANCELLATION`` (off by default)
   WebRTC's AEC3 first removes the agent's voice and the cleaned audio is what the model
   hears. Speech that our detector hears in the raw audio and not beyond the echo is the
   agent's echo, counted as such; so is an item of the model's VAD that began while echo
   could arrive (``ECHO_TAIL_S``) and held under ``ITEM_CALLER_MS`` of the caller's sound
   (counted past the echo window too, where all sound is the caller's), once the judge has
   learned the line (about 1.3 s of the agent's audio with the caller quiet). Frames the
   judge saw before it learned are judged again then; an item that began before and ends
   after is judged by them (the model's VAD makes one item of a whole reply's echo); one
   that ends before is left to its words (step 4). Once the judge has learned
   the line, a frame of echo alone (``GATE_HOLD_MS`` past the caller's last sound beyond it)
   reaches the model as silence: its VAD makes no item of the echo, and the caller's items
   hold their own sound, not a reply's echo around it.
2. **Pause.** Once the caller has spoken ``pause_ms`` (WebRTC VAD on the cleaned audio;
   ``EARLY_PAUSE_MS`` on a line where echo was found, before the judge has learned it; on a
   learned line, a word's edges under loud echo count too: :class:`~telephony.bridge.
   barge_in_items.WordEdges`), the agent's audio stops at the caller's ear (``clear``), the
   rest kept: the barge-in reaction.
3. **Interrupt or resume.** Speech reaching ``min_speech_ms`` is a real interruption: the
   reply is truncated where the caller stopped hearing it and cancelled. Speech that ends
   before (``RESUME_AFTER_MS`` of quiet) resumes the agent's audio where it stopped, nothing
   skipped or repeated; before the judge has learned a line where echo was found, not while
   its echo may arrive (the line's delay and ``ECHO_HOLD_MS``): after it, the caller is
   heard alone.
4. **Words.** When the model's VAD reports the short speech as an item, its transcript
   decides (:mod:`~telephony.bridge.turn_words`): words other than backchannels ("mm-hm",
   "yeah", "okay", ...), not the agent's own and, while the agent went on past them, not
   function words only ("And I can.", a recogniser's reading of a hum: ``noise``) are a real
   turn after all (interrupt, then answer), unless the item began with the line's echo
   learned and the caller's speech beyond the echo in it did not reach ``pause_ms`` (a cough
   a recogniser made words of: ``noise``), or began before it learned on a line where echo
   was found by the item's end, with no word that asks the agent to stop and under
   ``pause_ms`` of it, or under ``min_speech_ms`` with the echo found when it began and no
   word that asks for the turn (its words are mostly the echo's: ``short_speech``);
   otherwise the item is deleted from the conversation so the model's view stays true, and
   the suppressed interruption is logged with its kind: ``echo``, ``short_speech``,
   ``backchannel`` or ``noise``.

Speech while the agent is silent is a turn as before: answered when the model's VAD ends it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..audio import ulaw_decode, ulaw_encode
from ..audio.echo import EchoCanceller, PlayoutReference
from ..audio.speech import SpeechDetector
from ..config import BargeInRules
from .barge_in_actions import GuardActions, SessionActions  # re-exported
from .barge_in_items import CallerSpeech, VadItem, WordEdges, item_kind
from .echo_path import GuardEcho
from .turn_words import kind_of

__all__ = ["SUPPRESSED_KINDS", "BargeInGuard", "GuardActions", "SessionActions"]

FRAME_MS = 20
ECHO_TAIL_S = 1.0  # echo of audio played this long ago may still arrive (450 ms + a room)
ITEM_LOOKBACK_MS = 1000  # a model VAD item's speech began up to this long before its event
ITEM_CALLER_MS = 100  # caller sound beyond the echo that makes an item the caller's
RESUME_AFTER_MS = 60  # quiet that ends a short speech (a pause resumes then)
GAP_MS = 100  # quiet within one speech (between syllables) that does not end it
MERGE_MS = 400  # speech again within this of the last continues it (a pause between words)
TRANSCRIPT_WAIT_S = 4.0  # a guarded item's transcript, waited for at most (2 s dropped turns)
GATE_HOLD_MS = 300  # after the caller's sound, echo frames still reach the model this long
EARLY_PAUSE_MS = 120  # see BargeInGuard._pause_ms ("Wait," over room echo: 160-180 ms)
ECHO_HOLD_MS = 100  # a line's echo arrives this long past its delay (a hybrid's path, a room's)
REPAUSE_MS = 100  # speech that pauses the agent again after a resume (not a stray frame)
SILENT_FRAME = b"\xff" * 160  # 20 ms of μ-law silence
SUPPRESSED_KINDS = ("echo", "short_speech", "backchannel", "noise")


class BargeInGuard:
    """One call's barge-in guard.

    Args:
        rules: the thresholds, backchannels and echo cancelling (``BARGE_IN_*``).
        actions: pause, resume, interrupt, respond and forget an item.
        audible: True while the agent's audio plays at the caller or a pause holds it.
        agent_words: the agent's words of the last reply or two (for the echo check).
        record: writes a call-log record.
    """

    def __init__(
        self,
        rules: BargeInRules,
        actions: GuardActions,
        audible: Callable[[], bool],
        agent_words: Callable[[], str],
        record: Callable[..., Any],
    ) -> None:
        self.rules = rules
        self._actions = actions
        self._audible = audible
        self._agent_words = agent_words
        self._record = record
        self.reference = PlayoutReference()
        self._canceller: EchoCanceller | None = None
        self._echo = GuardEcho(record)
        self._caller_frames: deque[int] = deque(maxlen=1000)  # caller_ms of the caller's sound
        self._speech_frames: deque[int] = deque(maxlen=1000)  # and of their speech (VAD)
        self._detect = SpeechDetector()
        self._detect_raw = SpeechDetector()
        self._speech: CallerSpeech | None = None
        self._items: dict[str, VadItem] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.suppressed: dict[str, int] = dict.fromkeys(SUPPRESSED_KINDS, 0)
        self.caller_ms = 0  # the caller's audio clock: ms of caller audio seen so far
        self._last_audible_at = -1.0  # when a caller frame last found the agent audible
        self._last_speech_at = -1.0  # when our detector last heard the caller speak
        self._sound_at_ms = -GATE_HOLD_MS  # caller_ms of the caller's last sound beyond echo
        # caller frames of echo alone the model heard as silence; frames the guard took
        self.frames_gated = self.frames_guarded = 0
        self._missed = 0  # frames in a row just before with speech heard, not beyond the echo
        self._edges = WordEdges()  # a word's onset and tail, toward a pause
        self.cancel_s = 0.0  # CPU in the echo canceller and the detectors

    # ------------------------------------------------------------------ caller audio

    async def caller_frame(self, ulaw: bytes, now: float, at: float) -> bytes:
        """One caller frame (μ-law 8 kHz, 20 ms) that arrived at ``now``
        (``time.monotonic()``) and ends at ``at`` on the caller's audio clock (seconds of
        caller audio); returns what the model should hear: the same bytes, or with echo
        cancelled (``ECHO_CANCELLATION``), or μ-law silence for a frame of the agent's echo
        alone once the judge has learned the line (``GATE_HOLD_MS`` after the caller's last
        sound beyond the echo). Drives pause, resume and interrupt on that audio clock: the
        same audio decides alike however fast it arrives. The echo reference is on it too."""
        self.caller_ms = round(at * 1000)
        reference = self.reference
        echo = reference is not None and reference.audible(at, self._echo_tail_s())
        audible = self._audible()
        if audible:
            self._last_audible_at = now
        if not (echo or self._speech is not None or audible):
            if any((i.echo or i.early) and not i.stopped for i in self._items.values()):
                # an item that began in the echo window is still open: no echo can arrive
                # now, so its sound is the caller's (as sound beyond the echo is, within)
                raw = ulaw_decode(ulaw)
                if len(raw) == 320 and self._detect.loud(raw):
                    self._caller_frames.append(self.caller_ms)
                    self._speech_frames.append(self.caller_ms)
            return ulaw
        t0 = time.perf_counter()
        self.frames_guarded += 1
        raw = ulaw_decode(ulaw)
        heard, raw_speech, beyond_echo, judged, onset, heard_loud = raw, False, True, False, 0, None
        if echo and reference is not None and len(raw) == 320:
            far = reference.take(at, 160)
            if self.rules.echo_cancellation:
                if self._canceller is None:
                    self._canceller = EchoCanceller()
                heard = self._canceller.process(raw, far)
                ulaw = ulaw_encode(heard)
            # the judge takes the raw frame: no band path explains AEC3's adapting residual
            heard_loud = self._detect.loud(heard)  # once: the detectors below take it
            loud = not self._echo.learned and heard_loud
            placed = reference.placements  # when it changes, what played moved on the clock
            beyond_echo, reviewed = self._echo.frame(raw, far, at, self.caller_ms, loud, placed)
            judged, onset = not self._echo.failed, self._echo.onset_frames
            if reviewed is not None:
                await self._review(*reviewed)
            raw_speech = self._detect_raw(raw, heard_loud if heard is raw else None)
        voiced = len(heard) == 320 and self._detect(heard, heard_loud)
        speech = voiced and beyond_echo
        # the caller's sound for the model's VAD items: beyond the echo where judged (a tone
        # or a laugh counts, as it does for the model's VAD), our detector's speech elsewhere
        if speech:
            self._speech_frames.append(self.caller_ms)
        if speech or (judged and beyond_echo and heard_loud):
            self._caller_frames.append(self.caller_ms)
            self._sound_at_ms = self.caller_ms
        elif judged and self._echo.learned and self.caller_ms - self._sound_at_ms > GATE_HOLD_MS:
            # the agent's echo alone: the model hears silence, so its VAD makes no item of
            # the echo and the caller's items hold the caller's sound, not a reply's echo
            # around it (a cough inside one item with 8 s of echo: its words made it a turn)
            ulaw = SILENT_FRAME
            self.frames_gated += 1
        self.cancel_s += time.perf_counter() - t0
        # a caller's first frames over found echo, which our detector heard and the presence
        # test could not yet tell from the echo, count once it can (echo_delay.ONSET_FRAMES)
        credit = min(onset, self._missed) if speech else 0
        self._missed = 0 if speech or not raw_speech else self._missed + 1
        # a word's onset and fading tail over a learned line's loud echo count toward the
        # pause only
        edges = self._edges.frame(speech, judged and voiced and not speech and self._echo.edge())
        await self._on_frame(speech, raw_speech, now, credit, edges)
        return ulaw

    async def _review(self, first: int, last: int, again: set[int]) -> None:
        """The judge has just learned the line: the caller's sound in the frames it judged
        before (caller_ms ``first`` to ``last``), under its loose prior, is what the learned
        path now says of them (``again``: the loud ones beyond the echo). An item that ended
        before, still waiting for its words, holding ``min_speech_ms`` of that sound is a
        real turn now (a caller in a hybrid echo's first 200 ms, barely heard under the
        prior, whose transcript came too late: the interruption was dropped)."""
        kept = [ms for ms in self._caller_frames if not first <= ms <= last]
        self._caller_frames = deque(sorted([*kept, *again]), maxlen=self._caller_frames.maxlen)
        for item_id, item in list(self._items.items()):
            if item.early and item.stopped and not item.real:
                since_ms = item.started_ms - ITEM_LOOKBACK_MS
                sound_ms = self._caller_sound_ms(since_ms, until_ms=item.stopped_ms)
                if await self._heard_at_length(item_id, item, sound_ms):
                    item.answered.set()  # its _decide answers the turn

    async def _heard_at_length(self, item_id: str, item: VadItem, sound_ms: int) -> bool:
        """An item the judge's review found ``sound_ms`` of the caller's sound in: with
        ``min_speech_ms`` of it, a real turn (the agent interrupted if it still plays)."""
        if sound_ms < self.rules.min_speech_ms:
            return False
        self._record("barge_in.interruption", item_id=item_id, why="review", speech_ms=sound_ms)
        if self._audible():
            await self._interrupt()
        item.real = True
        return True

    async def _on_frame(
        self, speech: bool, raw_speech: bool, now: float, credit: int, edges: int = 0
    ) -> None:
        s = self._speech
        if s is None:
            if not ((speech or raw_speech) and self._audible()):
                return
            s = self._speech = CallerSpeech(started_at=now - FRAME_MS / 1000)
        if speech:
            self._last_speech_at = now
        if speech or raw_speech:
            s.quiet_ms = 0
            s.speech_ms += FRAME_MS * (1 + credit) if speech else 0
            s.raw_ms += FRAME_MS if raw_speech else 0
            s.edge_ms += FRAME_MS * edges
            s.ended = False
        else:
            s.quiet_ms += FRAME_MS  # audio time: replays faster than real time decide alike
        if s.interrupted:
            if s.quiet_ms >= GAP_MS:
                self._speech = None
            return
        if s.ended:  # resumed: more speech soon continues the same speech ("wait, stop")
            if s.quiet_ms >= MERGE_MS:
                self._speech = None
                self._speech_done(s)
            return
        if s.speech_ms >= self.rules.min_speech_ms:
            s.interrupted = True
            self._record("barge_in.interruption", speech_ms=s.speech_ms, why="long_speech")
            await self._interrupt(s)
            return
        # after a resume, speech again pauses it again, but not a stray frame or two (a count
        # "yeah" over room echo paused the reply 28 times, each resume paused by a stray frame)
        again = not s.resumed or s.speech_ms - s.resumed_ms >= REPAUSE_MS
        if not s.paused and s.speech_ms + s.edge_ms >= self._pause_ms() and again:
            s.paused = await self._actions.pause(s.started_at, self.caller_ms)
        tail_s = self._echo_tail_s()  # a pause holds while its echo may arrive
        if s.quiet_ms >= (RESUME_AFTER_MS if s.paused else GAP_MS) and not (
            tail_s < ECHO_TAIL_S and self.reference.audible(self.caller_ms / 1000, tail_s)
        ):
            s.ended = True
            if s.paused:
                s.paused = False
                s.resumed = True
                s.resumed_ms = s.speech_ms
                await self._actions.resume(self.caller_ms)

    def _pause_ms(self) -> int:
        """Speech beyond the echo that pauses the agent: ``pause_ms``, less before the judge
        has learned a line where echo was found (``EARLY_PAUSE_MS``): there, only double talk
        (the presence test's, the early echo fit's) or a caller above any echo is speech."""
        if self._echo.echo_found and not self._echo.learned:
            return min(self.rules.pause_ms, EARLY_PAUSE_MS)
        return self.rules.pause_ms

    def _echo_tail_s(self) -> float:
        """How long after playback ended its echo may still arrive, s: ``ECHO_TAIL_S``, but
        while the caller's speech holds a pause before the judge has learned a line where
        echo was found, the line's delay and ``ECHO_HOLD_MS``: past that they are on the line
        alone. (The judge's prior allows echo of anything played in its 600 ms window: it
        called a "Wait, stop, I have a question." echo for 300 ms after it paused the agent
        over a 6 dB hybrid, a gap between words resumed the reply under it, and the words
        decided 2.8-5 s in or after the reply had ended.)"""
        s = self._speech  # first: on most frames nothing holds a pause
        if s is None or not s.paused:
            return ECHO_TAIL_S
        delay_ms = self._echo.delay_ms
        if delay_ms is None or self._echo.learned:
            return ECHO_TAIL_S
        return min(ECHO_TAIL_S, (delay_ms + ECHO_HOLD_MS) / 1000)

    def _speech_done(self, s: CallerSpeech) -> None:
        """Caller speech shorter than an interruption is over for good."""
        if s.speech_ms < self.rules.pause_ms and s.raw_ms >= self.rules.pause_ms:
            self._suppress("echo", speech_ms=s.raw_ms)  # heard only before cancelling
        elif s.resumed:
            self._record("barge_in.resumed", speech_ms=s.speech_ms)

    async def _interrupt(self, s: CallerSpeech | None = None) -> None:
        if s is not None and not s.paused and self._audible():
            await self._actions.pause(s.started_at, self.caller_ms)
        for item in self._items.values():
            if item.guarded and not item.stopped:
                item.real = True
        await self._actions.interrupt()

    # ------------------------------------------------------------------ the model's VAD

    async def on_server_event(self, raw: dict[str, Any]) -> None:
        """One OpenAI server event: the model's VAD and its transcripts drive the guard."""
        kind, item_id = raw.get("type"), raw.get("item_id")
        if not isinstance(item_id, str):
            return
        if kind == "input_audio_buffer.speech_started":
            await self.speech_started(item_id)
        elif kind == "input_audio_buffer.speech_stopped":
            await self.speech_stopped(item_id)
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.transcript(item_id, str(raw.get("transcript") or ""))
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.transcript(item_id, "")

    async def speech_started(self, item_id: str) -> None:
        """``input_audio_buffer.speech_started``: a caller audio item begins."""
        guarded = self._audible() or self._speech is not None
        # only a judge that has learned the line may call a whole item echo: before, a caller
        # below the agent's level is not told from its echo, and the words decide
        in_echo = self.reference.audible(self.caller_ms / 1000, ECHO_TAIL_S)
        learned = self._echo.learned
        self._items[item_id] = VadItem(
            guarded,
            self.caller_ms,
            echo=in_echo and learned,
            early=in_echo and not learned,
            found_first=self._echo.echo_found,
        )
        if guarded and self._speech is not None and self._speech.interrupted:
            self._items[item_id].real = True

    async def speech_stopped(self, item_id: str) -> None:
        """``input_audio_buffer.speech_stopped``: the item is complete (committed next)."""
        item = self._items.setdefault(item_id, VadItem(guarded=self._audible()))
        item.stopped, item.stopped_ms = True, self.caller_ms
        # found by its end: the model's VAD may begin an item on the echo's first syllable
        item.echo_found = item.early and self._echo.echo_found
        # a backchannel goes under the agent's speech; speech the agent stopped before is
        # an answer to it ("...shall I go ahead?" "Yes.")
        item.outlasted = self._audible() or self._last_audible_at > self._last_speech_at
        since_ms = item.started_ms - ITEM_LOOKBACK_MS
        sound_ms = self._caller_sound_ms(since_ms)
        item.speech_ms = sum(FRAME_MS for ms in self._speech_frames if ms >= since_ms)
        # an item that began before the judge learned is judged so once it has: the frames
        # before were judged again with the learned path (_review)
        echo = item.echo or (item.early and self._echo.learned)
        if item.early and self._echo.learned and not item.real:
            await self._heard_at_length(item_id, item, sound_ms)  # see _review
        if echo and not item.real and sound_ms < ITEM_CALLER_MS:
            # all the model's VAD heard was the agent's own echo: no turn, whatever words
            # a recogniser makes of it
            self._items.pop(item_id, None)
            self._suppress("echo", item_id=item_id, caller_ms=sound_ms)
            await self._actions.forget(item_id)
            return
        if not item.guarded or item.real:
            self._items.pop(item_id, None)
            await self._actions.respond()
            return
        task = asyncio.create_task(self._decide(item_id, item), name=f"barge-in:{item_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _caller_sound_ms(self, since_ms: int, until_ms: int | None = None) -> int:
        """Caller sound beyond the agent's echo (our detector and the echo judge) heard since
        ``since_ms`` (up to ``until_ms``, None: now) on the caller's audio clock, ms."""
        end = self.caller_ms if until_ms is None else until_ms
        return sum(FRAME_MS for ms in self._caller_frames if since_ms <= ms <= end)

    def transcript(self, item_id: str, text: str) -> None:
        """The item's transcript (``...input_audio_transcription.completed``; '' when it
        failed)."""
        item = self._items.get(item_id)
        if item is not None:
            item.transcript = text
            item.answered.set()

    async def _decide(self, item_id: str, item: VadItem) -> None:
        """A guarded item that did not interrupt by its length: its words decide."""
        try:
            async with asyncio.timeout(TRANSCRIPT_WAIT_S):
                await item.answered.wait()
        except TimeoutError:
            pass
        self._items.pop(item_id, None)
        if item.real:
            await self._actions.respond()
            return
        # short speech under the agent: words that carry no request alone ("And I can.",
        # what a recogniser made of an "mm-hm") are no turn
        short = item.outlasted and item.speech_ms < self.rules.min_speech_ms
        kind = self.kind_of(item.transcript, short=short)
        kind = item_kind(item, kind, short, self.rules.pause_ms)
        if kind is None:
            self._record(
                "barge_in.interruption", item_id=item_id, why="words", speech_ms=item.speech_ms
            )
            if self._audible():
                await self._interrupt()
            await self._actions.respond()
            return
        self._suppress(kind, item_id=item_id, transcript=item.transcript, speech_ms=item.speech_ms)
        await self._actions.forget(item_id)

    def kind_of(self, transcript: str | None, short: bool = False) -> str | None:
        """Why a transcript is not a turn (:func:`~telephony.bridge.turn_words.kind_of`, with
        this call's backchannels and the agent's recent words), or None: it is one."""
        return kind_of(transcript, self.rules.backchannels, self._agent_words(), short)

    def _suppress(self, kind: str, **fields: Any) -> None:
        self.suppressed[kind] += 1
        self._record("barge_in.suppressed", kind=kind, **fields)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def totals(self) -> dict[str, Any]:
        """For ``call.end``: suppressed interruptions by kind, and the guard's CPU."""
        return {
            "suppressed_interruptions": dict(self.suppressed),
            "guard_frames": self.frames_guarded,
            "gated_frames": self.frames_gated,
            **self._echo.totals(),
            "guard_us_per_frame": round(self.cancel_s / max(self.frames_guarded, 1) * 1e6, 1),
        }
