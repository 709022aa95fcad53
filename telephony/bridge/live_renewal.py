"""A GPT-Live session renewed before its ``expires_at``, at a quiet moment, make before break.

A GPT-Live session ends at the ``expires_at`` its ``session.started`` names (``session.closed``
``expired``; the numeric cap is not published). From ``MODEL_RENEWAL_MARGIN`` before it (or
half the session's life, when that is shorter) the call waits for a quiet moment: the
agent silent and all its speech played, no tool, transfer or hang-up under way, the caller
quiet for :data:`QUIET_FRAMES`. Then the next session opens, seeded with the transcript, while
the old one still serves the call; if the moment is still quiet and nothing was said
meanwhile, the call switches to it (caller audio and events) and the old one is closed
(``session.close``), else it is dropped and the next quiet moment tried. A failed connect is
tried again after :data:`RETRY_S`. Without a quiet moment before ``expires_at`` (less
:data:`MIN_LEFT_S`), the server's ``expired`` close renews the session as before, at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..observability.call_log import describe_error

__all__ = ["MIN_LEFT_S", "QUIET_FRAMES", "RETRY_S", "LiveRenewal"]

QUIET_FRAMES = 25  # the caller quiet this long (500 ms) for a quiet moment
POLL_S = 0.1
RETRY_S = 5.0
MIN_LEFT_S = 2.0  # no switch this close to the cap: the expiry's renewal does it

Next = TypeVar("Next")


class LiveRenewal(Generic[Next]):
    """When to renew one call's session, and its successor.

    Args:
        margin_s: seconds before ``expires_at`` the search for a quiet moment starts.
        quiet: whether this is a quiet moment.
        said: changes whenever a word of the call is transcribed (the seed would be stale).
        connect: opens the next session, seeded with the transcript; raises on failure.
        discard: closes a successor that came too late for its moment.
        record: writes a call-log record (``model.error`` with ``where: renewal``,
            ``model.renewal_skipped`` for a successor discarded).
    """

    def __init__(
        self,
        margin_s: float,
        quiet: Callable[[], bool],
        said: Callable[[], Any],
        connect: Callable[[], Awaitable[Next]],
        discard: Callable[[Next], Awaitable[None]],
        record: Callable[..., Any],
    ) -> None:
        self._margin_s = margin_s
        self._quiet, self._said = quiet, said
        self._connect, self._discard, self._record = connect, discard, record
        self.discarded = 0
        self._later: set[asyncio.Task[Any]] = set()

    def later(self, work: Awaitable[Any]) -> None:
        """Run ``work`` (an old session's close) in the background until :meth:`close`."""
        task = asyncio.ensure_future(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def close(self) -> None:
        """Wait for the background work (the call ends). Never raises."""
        await asyncio.gather(*self._later, return_exceptions=True)

    async def serve(
        self, pump: Awaitable[str], expires_at: float | None
    ) -> tuple[str, Next | None]:
        """Run ``pump`` (a session's events, until it ends; returns why) beside the search
        for its successor: (why, None) when the session ended first (what ``pump`` raised is
        raised), (``planned``, the successor) when the successor came first (the pump is
        stopped)."""
        pumping = asyncio.ensure_future(pump)
        renew = asyncio.create_task(self.successor(expires_at), name="live-renewal")
        try:
            done, _ = await asyncio.wait({pumping, renew}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, renew):
                task.cancel()
            await asyncio.gather(pumping, renew, return_exceptions=True)
        if pumping in done:
            return pumping.result(), None
        return "planned", renew.result()

    async def successor(self, expires_at: float | None) -> Next:
        """The next session, opened at a quiet moment before ``expires_at`` (Unix seconds;
        None: never returns); never returns when no moment comes in time."""
        if expires_at is None:
            await asyncio.Event().wait()
        assert expires_at is not None
        life = expires_at - time.time()
        await asyncio.sleep(max(0.0, life - min(self._margin_s, life / 2)))
        while time.time() < expires_at - MIN_LEFT_S:
            if not self._quiet():
                await asyncio.sleep(POLL_S)
                continue
            before = self._said()
            try:
                nxt = await self._connect()
            except Exception as exc:
                self._record("model.error", where="renewal", error=describe_error(exc))
                await asyncio.sleep(RETRY_S)
                continue
            if self._quiet() and self._said() == before:
                return nxt
            self.discarded += 1
            await self._discard(nxt)
            self._record("model.renewal_skipped", why="not quiet")
        await asyncio.Event().wait()  # the expiry renews it
        raise AssertionError("unreachable")
