"""Keypad digits (Twilio ``dtmf`` messages) to the agent, as one text message per entry.

A person presses at most about ten keys a second (a DTMF digit is at least 40 ms of tone and
40 ms of pause, ITU-T Q.24), and an entry (a PIN, a menu choice) every few seconds. A stream
that sends more (a flood of ``#``) must not become a flood of model responses or of call-log
lines, so the keypad keeps two budgets on the caller's audio clock (seconds of caller audio
received, so the stream cannot make time pass faster than it sends audio):

- keys: :data:`KEY_BURST` at once, then :data:`KEY_RATE` a second, and at most
  :data:`MAX_CALL_KEYS` in a call; keys beyond are dropped, counted in a ``dtmf.dropped``
  record (the first drop at once, then at most one record every :data:`DROP_REPORT_S`);
- messages to the agent: :data:`ENTRY_BURST` at once, then one every :data:`ENTRY_EVERY_S`. An
  entry finished while the budget is spent waits, and the keys pressed meanwhile join it (up to
  :data:`MAX_DTMF_DIGITS`); nothing a person types is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from agents.realtime import RealtimeSession

from ..observability.call_log import describe_error

__all__ = ["DTMF_TEXT", "MAX_DTMF_DIGITS", "Keypad"]

DTMF_TEXT = "The caller pressed these keys on the phone keypad: {}"
MAX_DTMF_DIGITS = 32  # keys in one message to the agent
KEY_RATE = 12.0  # keys a second, sustained (a person: about 10)
KEY_BURST = 32  # keys at once
MAX_CALL_KEYS = 1000  # keys in one call
ENTRY_BURST = 2  # messages to the agent at once
ENTRY_EVERY_S = 3.0  # then one every this many seconds
DROP_REPORT_S = 10.0  # at most one dtmf.dropped record this often
POLL_S = 0.1  # how often a waiting entry checks its budget (wall clock)


class Budget:
    """A token bucket on a clock: ``burst`` tokens at once, ``rate`` more a second.

    Args:
        rate: tokens a second (per the clock's seconds).
        burst: tokens it holds at most (and starts with).
        clock: seconds, never decreasing (here: the caller's audio clock).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Keypad:
    """Collects a call's keys until ``#``, ``timeout_s`` of quiet or ``MAX_DTMF_DIGITS`` keys,
    then sends them to the agent as one user message (:data:`DTMF_TEXT`), within the budgets
    above.

    Args:
        timeout_s: quiet after the last key before the digits go (``DTMF_TIMEOUT``), seconds.
        session: the session in use now (None: the digits are dropped).
        record: writes a call-log record (``dtmf``, ``dtmf.sent``, ``dtmf.dropped``,
            ``model.error``).
        clock: the caller's audio clock, seconds (the budgets' clock).
    """

    def __init__(
        self,
        timeout_s: float,
        session: Callable[[], RealtimeSession | None],
        record: Callable[..., Any],
        clock: Callable[[], float],
    ) -> None:
        self._timeout_s = timeout_s
        self._session = session
        self._record = record
        self._clock = clock
        self._keys = Budget(KEY_RATE, KEY_BURST, clock)
        self._entries = Budget(1.0 / ENTRY_EVERY_S, ENTRY_BURST, clock)
        self._pressed = 0
        self._dropped: Counter[str] = Counter()
        self._reported_at: float | None = None
        self._digits: list[str] = []
        self._waiting: asyncio.Task[None] | None = None  # quiet timer, or an entry on hold
        self._held = False  # the digits are a finished entry waiting for the budget
        self._sending: set[asyncio.Task[None]] = set()  # messages on their way

    def press(self, digit: str) -> None:
        """One key (Twilio ``dtmf``'s ``digit``)."""
        if self._pressed >= MAX_CALL_KEYS:
            self._drop("over the call's keys")
            return
        if len(self._digits) >= MAX_DTMF_DIGITS:  # only while an entry is held
            self._drop("over a message while one waits")
            return
        if not self._keys.take():
            self._drop("faster than a person types")
            return
        self._pressed += 1
        self._record("dtmf", digit=digit)
        self._digits.append(digit)
        if self._held:
            return  # it goes with the held entry
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        if digit == "#" or len(self._digits) >= MAX_DTMF_DIGITS:  # a bounded message
            self._finish()
        else:
            self._waiting = asyncio.create_task(self._finish_after_quiet())

    async def stop(self) -> None:
        """Drop digits not sent yet (the call is over); say what was dropped."""
        self._report(force=True)
        for task in (self._waiting, *self._sending):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def _drop(self, why: str) -> None:
        self._dropped[why] += 1
        self._report()

    def _report(self, force: bool = False) -> None:
        if not self._dropped:
            return
        now = self._clock()
        if not force and self._reported_at is not None and now - self._reported_at < DROP_REPORT_S:
            return
        self._reported_at = now
        for why, count in sorted(self._dropped.items()):
            self._record("dtmf.dropped", count=count, why=why)
        self._dropped.clear()

    async def _finish_after_quiet(self) -> None:
        await asyncio.sleep(self._timeout_s)
        self._waiting = None
        self._finish()

    def _finish(self) -> None:
        """The digits are an entry: to the agent now, or held until the budget allows."""
        if self._entries.take():
            self._send_now()
            return
        self._held = True
        self._waiting = asyncio.create_task(self._send_when_allowed())

    async def _send_when_allowed(self) -> None:
        # the budget runs on the caller's audio clock, which no event marks: look again soon
        while not self._entries.take():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        self._held = False
        self._waiting = None
        self._send_now()

    def _send_now(self) -> None:
        digits, self._digits = self._digits, []
        sending = asyncio.create_task(self._send(digits))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self, digits: list[str]) -> None:
        session = self._session()
        if not digits or session is None:
            return
        text = DTMF_TEXT.format(" ".join(digits))
        try:
            await session.send_message(text)
            self._record("dtmf.sent", digits="".join(digits), text=text)
        except Exception as exc:
            self._record("model.error", where="dtmf", error=describe_error(exc))
