"""A replay judged against its scenario: per turn what matched and what differed.

Turns line up as the scenario was cut (:func:`~.extract.assign_turns`): each of the replay's
log turns belongs to the caller turn said last before its ``speech.stopped``. A tool call
matches by name, and by each argument the expectation lists (text compared
case-insensitively); ``says``/``never_says`` are checked on the agent's transcript of the
turn. Latency is reported next to the recording's, never judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .extract import assign_turns
from .facts import ToolCallFacts, TurnFacts
from .run import Replay
from .scenario import ToolExpectation

__all__ = ["Report", "TurnReport", "check"]


@dataclass
class TurnReport:
    """One turn: what the caller said (or "(opening)"), what the agent said and did, the
    expectations it missed (``failures``), and latencies (ms) then and now."""

    index: int
    caller: str
    agent_text: str
    tools: list[str]
    failures: list[str] = field(default_factory=list)
    recorded_latency_ms: float | None = None
    latency_ms: float | None = None

    def line(self) -> str:
        said = f"turn {self.index} ({self.caller[:50]!r})" if self.index else "turn 0 (opening)"
        tools = ", ".join(self.tools) or "no tool"
        latency = ""
        if self.latency_ms is not None:
            then = self.recorded_latency_ms
            latency = f"; reply after {self.latency_ms:.0f} ms" + (
                f" (recorded {then:.0f} ms)" if then is not None else ""
            )
        verdict = "ok" if not self.failures else "FAILED: " + "; ".join(self.failures)
        return f"{said}: {tools}; agent said {self.agent_text[:60]!r}{latency}: {verdict}"


@dataclass
class Report:
    """The whole replay: per-turn reports and the call's own failures."""

    name: str
    turns: list[TurnReport]
    call_failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.call_failures and not any(t.failures for t in self.turns)

    def text(self) -> str:
        lines = [f"scenario {self.name}:"]
        lines += ["  " + t.line() for t in self.turns]
        lines += [f"  call: FAILED: {f}" for f in self.call_failures]
        lines.append(f"  {'passed' if self.passed else 'failed'}")
        return "\n".join(lines)


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, str) and isinstance(got, str):
        return expected.strip().lower() == got.strip().lower()
    return bool(expected == got)


def _tool_matches(expected: ToolExpectation, got: ToolCallFacts) -> bool:
    if expected.name != got.name:
        return False
    args = expected.arguments or {}
    return all(k in got.arguments and _same(v, got.arguments[k]) for k, v in args.items())


def _tool_text(t: ToolCallFacts) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in t.arguments.items())
    return f"{t.name}({args})"


def _turn_failures(expected: Any, got: list[TurnFacts]) -> list[str]:
    failures = []
    tools = [t for f in got for t in f.tools]
    if expected.tools is not None:
        left = list(tools)
        for want in expected.tools:
            hit = next((t for t in left if _tool_matches(want, t)), None)
            if hit is None:
                args = f" with {want.arguments}" if want.arguments else ""
                seen = ", ".join(_tool_text(t) for t in tools) or "none"
                failures.append(f"expected tool call {want.name}{args}, got {seen}")
            else:
                left.remove(hit)
        if not expected.tools and tools:
            failures.append(f"expected no tool call, got {', '.join(map(_tool_text, tools))}")
    text = " ".join(f.agent_text for f in got).lower()
    failures += [f"the reply does not say {w!r}" for w in expected.says if w.lower() not in text]
    failures += [f"the reply says {w!r}" for w in expected.never_says if w.lower() in text]
    return failures


def check(replay: Replay) -> Report:
    """Judge ``replay`` against its scenario's expectations."""
    scenario, facts = replay.scenario, replay.facts
    starts = [s * 1000 for s in replay.said_at]
    by_turn = assign_turns(facts.turns, starts)
    reports = []
    for k, turn in enumerate(scenario.turns):
        got = by_turn[k] if k < len(by_turn) else []
        latencies = [f.latency_ms for f in got if f.latency_ms is not None]
        caller = turn.caller.text or "" if turn.caller is not None else ""
        report = TurnReport(
            k,
            caller,
            " ".join(f.agent_text for f in got).strip(),
            [_tool_text(t) for f in got for t in f.tools],
            _turn_failures(turn.expect, got),
            turn.recorded_latency_ms,
            latencies[0] if latencies else None,
        )
        if turn.caller is not None and k > len(replay.said_at):
            report.failures.append("the call ended before the caller said this")
        reports.append(report)
    e, calls = scenario.expect, []
    checks = [
        ("hung up by", e.hung_up_by, facts.hung_up_by),
        ("call.end reason", e.end_reason, facts.end_reason),
        ("transfers", e.transfers, [str(t["destination"]) for t in facts.transfers]),
        ("barge-ins honoured", e.barge_ins, facts.barge_ins),
        ("barge-ins suppressed", e.suppressed, facts.suppressed),
        ("agent replies", e.replies, facts.replies),
    ]
    for what, want, got in checks:
        if got is None:  # not seen on this backend (GPT-Live yields by itself)
            continue
        if want is not None and want != got:
            calls.append(f"{what}: expected {want!r}, got {got!r}")
    return Report(scenario.name, reports, calls)
