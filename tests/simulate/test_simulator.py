"""The call simulator as a command: per-turn summary, the WAV of what the caller heard, and a
clear refusal of unusable input."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from audio_checks import (
    pcm,
    peak_hz,
)
from helpers import (
    AUTH_TOKEN,
    SILENCE,
    fixture_audio,
)

from telephony.audio import ulaw_decode
from telephony.testing import tone


async def test_simulator_command_prints_turns_and_saves_what_the_caller_heard(
    live_server, tmp_path, capsys, monkeypatch
) -> None:
    import wave

    from telephony.simulate import main

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)  # the command signs with it

    out = tmp_path / "heard.wav"
    source = tmp_path / "caller.ulaw"
    source.write_bytes(fixture_audio("goforward.ulaw"))
    async with live_server(reply=lambda _: tone(600, 400)) as srv:
        args = [
            str(source),
            "--url",
            srv.base_url,
            "--speed",
            "8",
            "--tail",
            "0.3",
            "--out",
            str(out),
        ]
        assert await asyncio.to_thread(main, args) == 0
    printed = capsys.readouterr().out
    assert "turn  first frame" in printed and "caller ended the call" in printed
    assert len([line for line in printed.splitlines() if line.startswith("   0 ")]) == 1
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    caller, agent = frames[:, 0].astype(float), frames[:, 1].astype(float)
    assert np.array_equal(caller[:22290], pcm(ulaw_decode(fixture_audio("goforward.ulaw"))))
    sounding = np.flatnonzero(agent)
    # the whole 400 ms reply, once: the sounding stretches add up to it (a replay at 8x on a
    # busy machine may deliver a packet late: the WAV then shows the gap where it was heard)
    breaks = np.flatnonzero(np.diff(sounding) > 8)  # the tone is never 8 samples at zero
    starts = np.concatenate(([sounding[0]], sounding[breaks + 1]))
    ends = np.concatenate((sounding[breaks], [sounding[-1]])) + 1
    assert abs((ends - starts).sum() / 8000 - 0.4) < 0.01
    reply = agent[sounding[0] : sounding[-1] + 1]
    assert abs(peak_hz(reply, 8000) - 600) < 5  # the reply tone
    assert sounding[0] / 8000 > 2.36  # it started after the caller stopped speaking


async def test_simulator_refuses_unusable_wav(tmp_path) -> None:
    import wave

    from telephony.simulate import load_caller_audio

    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00" * 64)
    with pytest.raises(ValueError, match="sox"):
        load_caller_audio(path)


async def test_a_scripted_caller_speaks_by_what_they_heard(live_server) -> None:
    """``Say`` is timed by the agent's audio the caller heard (played 20 ms packets), not by
    the clock: the first utterance comes once 0.5 s of the greeting has played, the second
    0.3 s after the agent's answer to it ended."""
    from audio_checks import ulaw_tone

    from telephony.simulate import Say

    first, second = Say(ulaw_tone(500, 0.4), heard_s=0.5), Say(ulaw_tone(500, 0.4), quiet_s=0.3)
    async with live_server(
        overrides={"greeting": "Hello."}, reply=lambda turn: tone(600, 1000 if turn else 2000)
    ) as srv:
        result = await srv.call(SILENCE * 160, script=[first, second], tail_s=0.5)
    said_first, said_second = result.said
    starts = [at for at, _ in result.played]
    assert len([at for at in starts if at <= said_first]) == 25  # 25 packets: 0.5 s heard
    # the caller spoke over the greeting; their answer's reply played, then 0.3 s of quiet
    answer = [at for at in starts if said_first < at < said_second]
    assert answer and said_second >= answer[-1] + 0.02 + 0.3
    assert said_second < answer[-1] + 0.02 + 0.3 + 0.021  # at the next 20 ms frame
    speech_starts = [start for start, _ in result.caller_speech]
    assert speech_starts == pytest.approx([said_first, said_second], abs=0.021)


async def test_the_command_says_in_one_line_when_no_server_answers_or_it_refuses(
    live_server, tmp_path, capsys, monkeypatch
) -> None:
    from helpers import free_port

    from telephony.simulate import main

    source = tmp_path / "caller.ulaw"
    source.write_bytes(fixture_audio("goforward.ulaw"))
    monkeypatch.chdir(tmp_path)  # no .env, no trial key here
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    nobody = f"http://127.0.0.1:{free_port()}"
    assert await asyncio.to_thread(main, [str(source), "--url", nobody]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no server answers at {nobody}" in err
    assert "start it with `.venv/bin/python server.py`" in err
    async with live_server() as srv:  # it checks signatures with AUTH_TOKEN
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-servers-token-0123456789")
        assert await asyncio.to_thread(main, [str(source), "--url", srv.base_url]) == 1
        wrong = capsys.readouterr().err
        monkeypatch.delenv("TWILIO_AUTH_TOKEN")
        assert await asyncio.to_thread(main, [str(source), "--url", srv.base_url]) == 1
        unsigned = capsys.readouterr().err
    assert wrong.count("\n") == 1 and "the server refused the call (403)" in wrong
    assert "--public-url" in wrong and "Traceback" not in wrong
    assert "no key to sign with" in unsigned and ".trial-key" in unsigned
