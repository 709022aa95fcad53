"""What the barge-in guard asks of a call (:class:`GuardActions`), and those actions on one
call: the outbound audio and the current model session (see :mod:`telephony.bridge.barge_in`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agents.realtime import RealtimeSession
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from ..observability.call_log import describe_error
from .outbound import OutboundAudio

__all__ = ["GuardActions", "SessionActions"]


class GuardActions(Protocol):
    """What the guard asks of the call."""

    async def pause(self, speech_start: float, caller_ms: int) -> bool: ...
    async def resume(self, caller_ms: int) -> None: ...
    async def interrupt(self) -> None: ...
    async def respond(self) -> None: ...
    async def forget(self, item_id: str) -> None: ...


class SessionActions:
    """:class:`GuardActions` on one call: the outbound audio and the current model session.

    Args:
        out: the call's outbound audio (pause, resume, drop).
        session: the session caller audio goes to now (None while one is being replaced:
            the action is skipped).
        record: writes a call-log record.
    """

    def __init__(
        self,
        out: OutboundAudio,
        session: Callable[[], RealtimeSession | None],
        record: Callable[..., Any],
    ) -> None:
        self._out = out
        self._session = session
        self._record = record

    async def pause(self, speech_start: float, caller_ms: int) -> bool:
        return await self._out.pause(speech_start, caller_ms)

    async def resume(self, caller_ms: int) -> None:
        await self._out.resume(caller_ms)

    async def interrupt(self) -> None:
        """Truncate the agent's item where the caller stopped hearing it and cancel the reply
        (the SDK's interrupt: ``conversation.item.truncate`` at the tracker's position, which a
        pause froze, and ``response.cancel``); drop what a pause kept."""
        item = self._out.current_item
        await self._send(lambda s: s.interrupt(), "interrupt")
        if self._out.paused and item is not None:  # the SDK knew of no item to interrupt
            await self._out.on_interrupted(item)

    async def respond(self) -> None:
        await self._send(lambda s: s.model.send_event(_raw({"type": "response.create"})), "respond")

    async def forget(self, item_id: str) -> None:
        message = {"type": "conversation.item.delete", "other_data": {"item_id": item_id}}
        await self._send(lambda s: s.model.send_event(_raw(message)), "forget")

    async def _send(self, act: Callable[[RealtimeSession], Awaitable[None]], what: str) -> None:
        session = self._session()
        if session is None:
            self._record("barge_in.skipped", action=what, why="no session")
            return
        try:
            await act(session)
        except Exception as exc:  # the supervisor finds a broken session on its own
            self._record("barge_in.skipped", action=what, why=describe_error(exc))


def _raw(message: dict[str, Any]) -> RealtimeModelSendRawMessage:
    return RealtimeModelSendRawMessage(message=message)  # type: ignore[arg-type]
