"""Run a scenario through ``server.py``, as the simulator calls it, and read what happened.

Each run starts its own ``server.py`` (on a free port of 127.0.0.1, its call log in a
temporary folder, a webhook key of its own, no Twilio REST: ``TWILIO_ACCOUNT_SID`` unset, so
nothing reaches a real call) with the settings of the folder it runs in (its ``.env`` and
environment: the agent, imported from that folder too, the greeting, the turn settings; but
one process: ``REDIS_URL`` unset, ``WORKERS=1``), and one of four models:

- ``configured``: what the settings say (OpenAI with ``OPENAI_API_KEY``, else offline);
- ``offline``: the embedded offline model (``REALTIME_BACKEND=local``; the ``local`` extra);
- ``loopback``: a scripted loopback model that replays the recorded agent (each response's
  audio, transcript and tool call, in order): the bridge and the agent's tools are tested
  deterministically, without a model.
- ``live-loopback``: the same recorded agent played by the fake GPT-Live server
  (``REALTIME_BACKEND=live``): the greeting, then per caller turn its tool call (delegated)
  and its reply, so a recorded call also tests the GPT-Live bridge and the tools through it.

The caller's turns are played by the simulator, each at its cue
(:class:`~telephony.simulate.Say`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..audio import ULAW_SILENCE
from ..observability.call_log import read_call_log
from ..simulate.call import simulate_call
from ..simulate.twilio_side import Say, SimulationResult
from ..testing import LoopbackRealtimeServer
from ..testing.live_server import FakeLiveServer
from .facts import CallFacts, call_facts
from .scenario import Scenario

__all__ = ["MODELS", "Replay", "ReplayError", "run_scenario", "server_script"]

Model = Literal["configured", "offline", "loopback", "live-loopback"]
MODELS: tuple[Model, ...] = ("configured", "offline", "loopback", "live-loopback")
START_S = 90.0  # the offline model loads in about 10-20 s on 2 cores
END_S = 10.0  # the call log's call.end follows the stream's end within this


class ReplayError(RuntimeError):
    """The scenario could not be run (no server.py, it would not start, no call log)."""


@dataclass
class Replay:
    """One run of a scenario: what the simulated Twilio saw, the call log and its facts,
    and the call time (seconds) each caller turn began."""

    scenario: Scenario
    simulation: SimulationResult
    records: list[dict[str, Any]]
    facts: CallFacts
    said_at: list[float]


def server_script() -> Path:
    """``server.py``: in the current folder, else beside the installed package (a checkout).
    Raises ReplayError when neither has one."""
    for folder in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (folder / "server.py").is_file():
            return folder / "server.py"
    raise ReplayError("no server.py here or beside the telephony package: run from the checkout")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _pcm24k(ulaw: bytes) -> bytes:
    """μ-law 8 kHz to pcm16 24 kHz for the loopback model (each sample three times: the
    loopback only plays it back, through our own downsampler)."""
    import numpy as np

    from ..audio import ulaw_decode

    pcm = np.frombuffer(ulaw_decode(ulaw), dtype="<i2")
    return np.repeat(pcm, 3).astype("<i2").tobytes()


def _loopback(scenario: Scenario) -> LoopbackRealtimeServer:
    responses = scenario.responses
    heard = [t.caller.text or "" for t in scenario.turns[1:] if t.caller is not None]
    audio = [_pcm24k(base64.b64decode(r.audio)) for r in responses]

    def reply(n: int) -> bytes:
        return audio[n] if n < len(audio) else b""

    def text(n: int) -> str:
        return responses[n].text if n < len(responses) else ""

    def tool(n: int) -> tuple[str, dict[str, Any]] | None:
        t = responses[n].tool if n < len(responses) else None
        return (t.name, dict(t.arguments or {})) if t is not None else None

    def transcript(n: int) -> str:
        return heard[n] if n < len(heard) else ""

    return LoopbackRealtimeServer(reply, reply_text=text, tool_call=tool, heard=transcript)


def _live_loopback(scenario: Scenario) -> FakeLiveServer:
    """The recorded agent on the fake GPT-Live: the opening's responses are the greeting;
    each caller turn then gets its turn's responses, their tool calls delegated as one batch
    and their audio as one reply. (A scenario from before responses named their turn: each
    response is a turn, one with a tool call together with the response after it.)"""
    responses = scenario.responses
    audio = [_pcm24k(base64.b64decode(r.audio)) for r in responses]
    groups: dict[int, list[int]] = {}
    if all(r.turn is not None for r in responses):
        for n, r in enumerate(responses):
            groups.setdefault(int(r.turn or 0), []).append(n)
    else:
        k, n = 1, 0
        while n < len(responses):
            size = 2 if responses[n].tool is not None and n + 1 < len(responses) else 1
            groups[k], k, n = list(range(n, n + size)), k + 1, n + size
    greeting = b"".join(audio[n] for n in groups.pop(0, []))
    turns = [groups[k] for k in sorted(groups)]

    def calls(k: int) -> list[tuple[str, str]]:
        tools = [responses[n].tool for n in turns[k]] if k < len(turns) else []
        return [(t.name, json.dumps(t.arguments or {})) for t in tools if t is not None]

    heard = [t.caller.text or "" for t in scenario.turns if t.caller is not None]
    return FakeLiveServer(
        greeting=greeting,
        reply=lambda k: b"".join(audio[n] for n in turns[k]) if k < len(turns) else b"",
        heard=lambda k: heard[k] if k < len(heard) else "",
        delegate=calls,
    )


def _start(env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """``server.py`` in the folder run in (its ``.env`` read, under ``env``)."""
    with out.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(server_script())],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _log_if_ended(path: Path) -> list[dict[str, Any]] | None:
    records = read_call_log(path) if path.exists() else []
    return records if records and records[-1].get("event") == "call.end" else None


@contextlib.asynccontextmanager
async def _server(env: dict[str, str], workdir: Path) -> AsyncIterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    here = str(Path.cwd())  # AGENT=module:attribute is imported from the folder run in
    paths = os.pathsep.join(
        filter(None, [here, env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))])
    )
    full = {**os.environ, **env, "PORT": str(port), "PUBLIC_URL": base, "HOST": "127.0.0.1"}
    # over .env too: no Twilio REST (nothing reaches a real call), one process, no fleet
    full |= {"PYTHONPATH": paths, "TWILIO_ACCOUNT_SID": "", "REDIS_URL": "", "WORKERS": "1"}
    out = workdir / "server.out"
    process = await asyncio.to_thread(_start, full, out)
    try:
        deadline = time.monotonic() + START_S
        while not await asyncio.to_thread(_healthy, base + "/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = out.read_text(errors="replace")[-2000:]
                raise ReplayError(f"server.py did not start:\n{tail}")
            await asyncio.sleep(0.1)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()


def _caller_audio(scenario: Scenario, speak: Any) -> tuple[bytes, list[Say]]:
    """The simulator's opening audio (a first turn timed by ``at_s``, after that much
    silence) and its script of cued turns."""
    opening = b""
    script: list[Say] = []
    for turn in scenario.turns[1:]:
        said = turn.caller
        assert said is not None
        audio = said.ulaw() or speak(said.text or "")
        if said.at_s is not None and not script and not opening:
            opening = bytes([ULAW_SILENCE]) * round(said.at_s * 8000) + audio
        else:
            script.append(Say(audio, heard_s=said.heard_s, quiet_s=said.quiet_s))
    return opening, script


def _speaker() -> Any:
    """Text to μ-law 8 kHz with the offline model's voice (Piper), loaded on first use."""
    from ..agent.local.stack import LocalModelUnavailable, load_local_stack
    from ..audio import ModelToCaller

    def speak(text: str) -> bytes:
        try:
            pcm = load_local_stack().speak(text)
        except LocalModelUnavailable as exc:
            raise ReplayError(f"text turns are spoken by the offline voice: {exc}") from None
        down = ModelToCaller()
        return down.feed(pcm) + down.flush()

    return speak


async def _ended_log(path: Path) -> list[dict[str, Any]]:
    deadline = time.monotonic() + END_S
    while time.monotonic() < deadline:
        records = await asyncio.to_thread(_log_if_ended, path)
        if records is not None:
            return records
        await asyncio.sleep(0.05)
    raise ReplayError(f"the call log {path.name} has no call.end")


async def run_scenario(
    scenario: Scenario,
    model: Model = "configured",
    *,
    env: dict[str, str] | None = None,
    max_tail_s: float = 20.0,
) -> Replay:
    """Run ``scenario`` once through a ``server.py`` of its own (see the module's text) and
    read its call log. ``env``: more settings for that server. Raises ReplayError when the
    server or its log fails; what the agent did is in the result, judged by
    :func:`~.check.check`."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="telephony-replay-") as tmp:
        workdir = Path(tmp)
        settings = {
            "CALL_LOG_DIR": str(workdir / "calls"),
            "TWILIO_AUTH_TOKEN": token,
            **(env or {}),
        }
        if model == "offline":
            settings["REALTIME_BACKEND"] = "local"
        speak = _speaker()
        opening, script = await asyncio.to_thread(_caller_audio, scenario, speak)
        async with contextlib.AsyncExitStack() as stack:
            if model == "loopback":
                loop = await stack.enter_async_context(_loopback(scenario))
                settings |= {
                    "REALTIME_BACKEND": "openai",
                    "OPENAI_API_KEY": "sk-replay-loopback",
                    "OPENAI_REALTIME_URL": loop.url,
                }
            elif model == "live-loopback":
                live = await stack.enter_async_context(_live_loopback(scenario))
                settings |= {
                    "REALTIME_BACKEND": "live",
                    "OPENAI_API_KEY": "sk-replay-loopback",
                    "OPENAI_BASE_URL": live.base_url,
                }
            base = await stack.enter_async_context(_server(settings, workdir))
            result = await simulate_call(
                base,
                opening,
                auth_token=token,
                script=script,
                dtmf=[(t, d) for t, d in scenario.dtmf],
                max_tail_s=max_tail_s,
                tail_s=2.0,
            )
            records = await _ended_log(workdir / "calls" / f"{result.call_sid}.jsonl")
    said_at = list(result.said)
    if opening and scenario.turns[1:] and scenario.turns[1].caller is not None:
        said_at.insert(0, scenario.turns[1].caller.at_s or 0.0)
    return Replay(scenario, result, records, call_facts(records), said_at)
