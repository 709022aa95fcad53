"""GPT-Live's tool loop: the delegate's function calls run here, and each batch is answered
with one ``function_call_output`` per call and a single ``response.create``.

The delegate's Responses stream arrives wrapped in ``response.event`` (``delegation_id``, and
the inner ``event``). A function call is an inner ``response.output_item.done`` whose item is a
completed ``function_call``; it starts running at once. The batch is complete when the inner
``response.completed`` (or ``response.done``/``response.failed``/``response.incomplete``) comes;
then every call's output is awaited and sent together (GPT-Live refuses a partial batch:
``../shared/reference/gpt_live.md`` §1.5). A tool that raises, runs past ``timeout_s`` or does
not exist is answered with a sentence saying so: a call is never left unanswered. The inner
``response.completed``'s ``usage`` is the delegate's tokens, for the call's cost.

A call of one of the agent's handoffs (``transfer_to_<agent>``) runs the SDK's handoff, and
``hand_off`` gives the session the new agent's delegate (a ``session.update``); the tools are
that agent's from then on, and the output is the SDK's transfer message (``handoff`` record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, Handoff, RunContextWrapper
from agents.realtime import RealtimeAgent
from agents.tool_context import ToolContext

from .config import LivePlan

__all__ = ["Delegations", "FunctionCall"]

BATCH_END = ("response.completed", "response.done", "response.failed", "response.incomplete")


@dataclass
class FunctionCall:
    """One function call of the delegate: its ``call_id``, tool ``name``, ``arguments``
    (JSON text) and the task running it."""

    call_id: str
    name: str
    arguments: str
    task: asyncio.Task[str] | None = None


@dataclass
class _Batch:
    calls: list[FunctionCall] = field(default_factory=list)


class Delegations:
    """The tool calls of one session.

    Args:
        tools: the agent's function tools by name.
        context: the call's context (``RunContextWrapper.context`` in the tools).
        answer: sends a batch's ``(call_id, output)`` answers and one ``response.create``.
        record: writes a call-log record.
        timeout_s: a tool running longer is answered as failed.
        on_tool: called with ``("start" | "end", tool)`` (the hold sound's cue).
        handoffs: the agent's handoffs by tool name.
        hand_off: moves the session to a handoff's agent (its delegate; raises on failure)
            and returns that agent's plan.
    """

    def __init__(
        self,
        tools: dict[str, FunctionTool],
        context: Any,
        answer: Callable[[list[tuple[str, str]]], Awaitable[None]],
        record: Callable[..., Any],
        timeout_s: float = 30.0,
        on_tool: Callable[[str, Any], None] | None = None,
        handoffs: dict[str, Handoff[Any, Any]] | None = None,
        hand_off: Callable[[RealtimeAgent[Any]], Awaitable[LivePlan]] | None = None,
    ) -> None:
        self._tools = tools
        self._handoffs = handoffs or {}
        self._hand_off = hand_off
        self._wrapper = RunContextWrapper(context)
        self._answer = answer
        self._record = record
        self._timeout_s = timeout_s
        self._on_tool = on_tool
        self._batches: dict[str, _Batch] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self.tokens: dict[str, int] = {"delegate_input": 0, "delegate_cached_input": 0,
                                       "delegate_output": 0}  # fmt: skip
        self.calls = 0
        self.batches = 0
        self.failures = 0

    @property
    def idle(self) -> bool:
        """No tool call under way and no batch waiting for its answer."""
        return not self._batches and not self._answering

    def on_response_event(self, delegation_id: str | None, inner: dict[str, Any]) -> None:
        """One inner Responses event of delegation ``delegation_id``."""
        kind = inner.get("type")
        key = delegation_id or ""
        if kind == "response.output_item.done":
            item = inner.get("item") or {}
            if item.get("type") == "function_call" and item.get("status", "completed") == (
                "completed"
            ):
                self._start(key, item)
        elif kind in BATCH_END:
            self._count_tokens(inner.get("response") or {})
            batch = self._batches.pop(key, None)
            if batch is not None and batch.calls:
                task = asyncio.create_task(self._finish(key, batch))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)

    def _start(self, key: str, item: dict[str, Any]) -> None:
        call = FunctionCall(str(item.get("call_id")), str(item.get("name")),
                            str(item.get("arguments") or "{}"))  # fmt: skip
        self.calls += 1
        self._record(
            "tool.call",
            delegation_id=key,
            call_id=call.call_id,
            name=call.name,
            arguments=call.arguments,
        )
        call.task = asyncio.create_task(self._run(call))
        self._batches.setdefault(key, _Batch()).calls.append(call)

    async def _run(self, call: FunctionCall) -> str:
        tool = self._tools.get(call.name)
        handoff = self._handoffs.get(call.name)
        if handoff is not None and self._hand_off is not None:
            return await self._handoff(call, handoff, self._hand_off)
        if tool is None:
            self.failures += 1
            self._record("tool.error", call_id=call.call_id, name=call.name, error="unknown tool")
            return f"There is no tool named {call.name}."
        if self._on_tool is not None:
            self._on_tool("start", tool)
        context = ToolContext.from_agent_context(
            self._wrapper,
            tool_name=call.name,
            tool_call_id=call.call_id,
            tool_arguments=call.arguments,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await tool.on_invoke_tool(context, call.arguments)
        except Exception as exc:  # a failing or slow tool is reported, never left unanswered
            self.failures += 1
            why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            self._record("tool.error", call_id=call.call_id, name=call.name, error=why)
            return f"The tool {call.name} failed ({why}). Tell the caller it did not work."
        finally:
            if self._on_tool is not None:
                self._on_tool("end", tool)
        output = result if isinstance(result, str) else json.dumps(result, default=str)
        self._record("tool.output", call_id=call.call_id, name=call.name, chars=len(output))
        return output

    async def _handoff(
        self,
        call: FunctionCall,
        handoff: Handoff[Any, Any],
        hand_off: Callable[[RealtimeAgent[Any]], Awaitable[LivePlan]],
    ) -> str:
        try:
            agent = await handoff.on_invoke_handoff(self._wrapper, call.arguments)
            plan = await hand_off(agent)
        except Exception as exc:
            self.failures += 1
            self._record(
                "tool.error", call_id=call.call_id, name=call.name, error=type(exc).__name__
            )
            return f"The handoff {call.name} failed. Go on helping the caller yourself."
        self._tools, self._handoffs = plan.tools, plan.handoffs
        self._record("handoff", call_id=call.call_id, to_agent=agent.name, tools=sorted(plan.tools))
        return handoff.get_transfer_message(agent)

    async def _finish(self, key: str, batch: _Batch) -> None:
        outputs = []
        for call in batch.calls:
            assert call.task is not None
            outputs.append((call.call_id, await call.task))
        self.batches += 1
        self._record("tool.batch", delegation_id=key, calls=len(outputs))
        try:
            await self._answer(outputs)
        except Exception as exc:
            self._record("model.error", where="tool_outputs", error=type(exc).__name__)

    def _count_tokens(self, response: dict[str, Any]) -> None:
        usage = response.get("usage") or {}
        cached = int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)
        self.tokens["delegate_input"] += int(usage.get("input_tokens") or 0) - cached
        self.tokens["delegate_cached_input"] += cached
        self.tokens["delegate_output"] += int(usage.get("output_tokens") or 0)

    async def close(self) -> None:
        """Cancel the tools still running and the batches not yet answered."""
        tasks = [*self._answering]
        tasks += [c.task for b in self._batches.values() for c in b.calls if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
