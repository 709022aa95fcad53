"""Recorded calls as regression tests (``telephony.replay``): a call recorded through
``server.py`` becomes a scenario, and the scenario replays through ``server.py``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import AUTH_TOKEN, ended_log, fixture_audio
from processes import ROOT, ServerProcess

from telephony.audio import ulaw_encode
from telephony.replay import Scenario, check, run_scenario, scenario_from_call
from telephony.replay.cli import main as replay_command
from telephony.replay.extract import HANGOVER_FRAMES, read_recording
from telephony.simulate import Say, simulate_call
from telephony.simulate.audio_files import speech_segments
from telephony.testing import LoopbackRealtimeServer, tone
from telephony.testing.live_server import FakeLiveServer

HERE = Path(__file__).resolve().parent
AGENTS = {"PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "GREETING": ""}
PACKET_S = 0.02


def _reply(turn: int) -> bytes:
    # the tool's turn says little, the answer after the tool is long (the caller barges in
    # 1 s into it), the last answer is short
    return tone(600, {0: 300, 1: 3000}.get(turn, 600))


def _tool(turn: int) -> tuple[str, dict[str, Any]] | None:
    return ("lookup_order", {"order": "42"}) if turn == 0 else None


async def _record_a_call(workdir: Path) -> tuple[list[dict[str, Any]], Path]:
    """A call through server.py with RECORD_CALLS=true: the caller asks, the agent calls
    lookup_order and answers at length, the caller barges in 1 s into that answer."""
    async with LoopbackRealtimeServer(reply=_reply, tool_call=_tool) as model:
        env = {
            **AGENTS,
            "AGENT": "replay_agents:agent",
            "RECORD_CALLS": "true",
            "RECORDING_DISCLOSURE": "",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "CALL_LOG_DIR": str(workdir / "calls"),
        }
        server = ServerProcess(env, workdir)
        try:
            await server.up()
            result = await simulate_call(
                server.base_url,
                fixture_audio("goforward.ulaw"),
                auth_token=AUTH_TOKEN,
                script=[Say(fixture_audio("numbers.ulaw"), heard_s=1.0)],
                tail_s=1.0,
            )
            records = await ended_log(workdir / "calls", result.call_sid, seconds=15)
        finally:
            server.stop()
    return records, workdir / "calls" / f"{result.call_sid}.wav"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Path]:
    """The recorded call, cut into a scenario by the command (``telephony-replay record``)."""
    workdir = tmp_path_factory.mktemp("recorded")
    records, wav = asyncio.run(_record_a_call(workdir))
    path = workdir / "scenarios" / "order.json"
    log = wav.with_suffix(".jsonl")
    assert replay_command(["record", "--log", str(log), "--wav", str(wav), "-o", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the caller's voice
    scenario = Scenario.load(path)
    assert scenario == scenario_from_call(records, wav, name=scenario.name)
    return scenario, wav


def _heard_before_barge_in(caller: np.ndarray, agent_heard: list[float]) -> float:
    """Seconds of agent audio the caller heard between the end of their first utterance
    and the start of their second (speech found by energy on the caller's audio)."""
    segments = speech_segments(ulaw_encode(caller.tobytes()), hangover_frames=HANGOVER_FRAMES)
    (_, first_end), (second_start, _) = segments[:2]
    return sum(PACKET_S for at in agent_heard if first_end <= at < second_start)


def _packets(agent: np.ndarray) -> list[float]:
    """Start times (s) of the 20 ms packets of a recording's agent channel that hold audio."""
    n = len(agent) // 160
    loud = np.any(agent[: n * 160].reshape(n, 160) != 0, axis=1)
    return [i * PACKET_S for i in np.flatnonzero(loud)]


async def test_a_recorded_call_replays_as_a_passing_scenario_and_catches_a_missing_tool(
    recorded: tuple[Scenario, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout is read
    scenario, wav = recorded
    # what the scenario took from the call: two caller turns, the second a barge-in, the
    # tool call in the first turn, the caller hung up
    assert [t.caller is not None for t in scenario.turns] == [False, True, True]
    assert scenario.turns[2].caller.heard_s is not None  # type: ignore[union-attr]
    [tool] = scenario.turns[1].expect.tools or []
    assert (tool.name, tool.arguments) == ("lookup_order", {"order": "42"})
    assert scenario.expect.hung_up_by == "caller" and scenario.expect.barge_ins == 1

    replay = await run_scenario(
        scenario, "loopback", env={**AGENTS, "AGENT": "replay_agents:agent"}
    )
    report = check(replay)
    assert report.passed, report.text()
    # the barge-in replays where it was: the caller's words start after as much of the
    # agent's reply as in the recording (within 100 ms)
    caller, agent = read_recording(wav)
    then = _heard_before_barge_in(caller, _packets(agent))
    played = [at for at, _ in replay.simulation.played]
    first_end = replay.simulation.caller_speech[0][1]
    second_start = replay.simulation.said[-1] + 0.1  # the turn's audio begins 100 ms early
    second = min(s for s, _ in replay.simulation.caller_speech if s >= second_start - 0.1)
    now = sum(PACKET_S for at in played if first_end <= at < second)
    assert abs(now - then) <= 0.1, (then, now)

    without = await run_scenario(
        scenario, "loopback", env={**AGENTS, "AGENT": "replay_agents:without_the_tool"}
    )
    report = check(without)
    assert not report.passed
    assert "expected tool call lookup_order with {'order': '42'}" in report.turns[1].line()
    assert "turn 1" in report.text() and "FAILED" in report.turns[1].line()


async def test_a_scenario_of_text_turns_runs_against_the_offline_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = Scenario.model_validate(
        {
            "turns": [
                {"expect": {"tools": []}},
                {
                    "caller": {"text": "Go forward ten meters.", "quiet_s": 0.5},
                    "expect": {"tools": [], "says": ["you said"], "never_says": ["sorry"]},
                },
            ],
            "expect": {"hung_up_by": "caller", "transfers": []},
        }
    )
    replay = await run_scenario(scenario, "offline", env={"GREETING": "Hello, how can I help?"})
    report = check(replay)
    assert report.passed, report.text()
    assert replay.facts.turns[0].agent_text  # the greeting was said before the caller spoke


def _authored(path: Path, expect_tool: bool) -> None:
    """A scenario for the scripted loopback: the caller says one sentence (text, spoken by
    Piper), the agent answers with a tone and no tool."""
    reply = base64.b64encode(ulaw_encode(tone(600, 500)[::3])).decode()
    caller = {"text": "Where is my order?", "at_s": 0.5}  # no greeting: said at once
    turn: dict[str, Any] = {"caller": caller, "expect": {"tools": []}}
    if expect_tool:
        turn["expect"] = {"tools": [{"name": "lookup_order"}]}
    data = {"turns": [{}, turn], "responses": [{"text": "It ships tomorrow.", "audio": reply}]}
    path.write_text(json.dumps(data))


def test_the_pytest_plugin_makes_each_scenario_file_a_test(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    _authored(folder / "answers.json", expect_tool=False)
    _authored(folder / "looks_up.json", expect_tool=True)
    env = {**os.environ, **AGENTS, "AGENT": "replay_agents:agent"}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q"),
            *("--scenarios", str(folder), "--scenario-model", "loopback", "-o", "addopts="),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "looks_up" in out and "turn 1 ('Where is my order?')" in out, out[-3000:]
    assert "expected tool call lookup_order, got none" in out, out[-3000:]


async def test_a_recorded_call_replays_on_gpt_live_and_catches_a_missing_tool(
    recorded: tuple[Scenario, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same recording on the other backend (``live-loopback``: the fake GPT-Live plays the
    recorded agent, the tool call delegated): it passes, its turns read from GPT-Live's
    records; the agent without the tool fails at the same turn."""
    monkeypatch.chdir(tmp_path)
    scenario, _ = recorded
    env = {**AGENTS, "AGENT": "replay_agents:agent"}
    replay = await run_scenario(scenario, "live-loopback", env=env)
    report = check(replay)
    assert report.passed, report.text()
    facts = replay.facts
    assert facts.backend == "live" and facts.barge_ins is None  # GPT-Live yields by itself
    assert [(t.name, t.arguments) for t in facts.turns[1].tools] == [
        ("lookup_order", {"order": "42"})
    ]
    assert facts.hung_up_by == "caller" and facts.replies == 2

    without = await run_scenario(
        scenario, "live-loopback", env={**AGENTS, "AGENT": "replay_agents:without_the_tool"}
    )
    report = check(without)
    assert not report.passed
    assert "FAILED" in report.turns[1].line(), report.text()


async def test_a_call_recorded_on_gpt_live_becomes_a_scenario_that_replays_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Record a GPT-Live call (the fake: a greeting, ``lookup_order`` delegated at the first
    turn, two replies), cut it into a scenario, and replay that on ``live-loopback``: the
    turns, the tool call and the end come back from GPT-Live's records."""
    fake = FakeLiveServer(
        greeting=tone(500, 600),
        reply=lambda n: tone(600, 1500 if n == 0 else 600),
        delegate=lambda n: [("lookup_order", '{"order": "42"}')] if n == 0 else [],
    )
    async with fake:
        env = {
            **AGENTS,
            "AGENT": "replay_agents:agent",
            "GREETING": "Hello, this is the shop.",
            "RECORD_CALLS": "true",
            "RECORDING_DISCLOSURE": "",
            "REALTIME_BACKEND": "live",
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_BASE_URL": fake.base_url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "CALL_LOG_DIR": str(tmp_path / "calls"),
        }
        server = ServerProcess(env, tmp_path)
        try:
            await server.up()
            said = [Say(fixture_audio(f), quiet_s=0.5) for f in ("goforward.ulaw", "okay.ulaw")]
            result = await simulate_call(
                server.base_url, b"", auth_token=AUTH_TOKEN, script=said, tail_s=1.0
            )
            records = await ended_log(tmp_path / "calls", result.call_sid, seconds=15)
        finally:
            server.stop()
    scenario = scenario_from_call(records, tmp_path / "calls" / f"{result.call_sid}.wav")
    assert [t.caller is not None for t in scenario.turns] == [False, True, True]
    [tool] = scenario.turns[1].expect.tools or []
    assert (tool.name, tool.arguments) == ("lookup_order", {"order": "42"})
    assert [r.turn for r in scenario.responses] == [0, 1, 1, 2]  # greeting; tool, answer; reply
    assert scenario.expect.barge_ins is None and scenario.expect.hung_up_by == "caller"

    monkeypatch.chdir(tmp_path)
    replay = await run_scenario(
        scenario, "live-loopback", env={**AGENTS, "AGENT": "replay_agents:agent", "GREETING": "Hi"}
    )
    report = check(replay)
    assert report.passed, report.text()
    assert replay.facts.replies == 3
