"""Talking to the agent from the browser, in a real headless Chromium: its fake microphone
reads a recording of real speech ("go forward ten meters"), the console's phone page sends it
as μ-law Media Streams frames, and the embedded offline model (no key) answers through the
real bridge: the page plays the agent's audio and shows the read-back in its transcript; the
call then has its page in the console like any call, marked simulated, at no carrier cost.

With ``CONSOLE_SCREENSHOTS=DIR`` it also saves the new console's empty list and the phone page
there (``docs/console-empty.png``, ``docs/phone.png``)."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import ended_log, fixture_audio, run_server, with_settings

from telephony.app import create_app
from telephony.audio import ulaw_decode
from telephony.config import Settings

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the browser tests need Playwright (the test extra)"
)
pytest.importorskip("telephony.agent.local", reason="the offline model (the local extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on this machine (.ci/run installs Debian's chromium package)",
)
TOKEN = "console-token-0123456789abcdef"


def microphone(path: Path) -> Path:
    """What the fake microphone says: 2 s of quiet (the greeting), the real recording, 5 s of
    quiet (the read-back), as a 16-bit WAV at 8 kHz."""
    speech = np.frombuffer(ulaw_decode(fixture_audio("goforward.ulaw")), "<i2")
    audio = np.concatenate((np.zeros(16000, "<i2"), speech, np.zeros(40000, "<i2")))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(audio.tobytes())
    return path


async def test_a_call_from_the_browser_is_answered_by_the_offline_model(
    settings: Settings, tmp_path: Path
) -> None:
    offline = with_settings(
        settings,
        openai_api_key=None,
        openai_realtime_url=None,
        twilio_auth_token=None,
        public_url=None,
        console_token=TOKEN,
        greeting="Hi.",
    )
    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone(tmp_path / 'mic.wav')}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with run_server(create_app(offline), offline.port) as url:
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
            context = await browser.new_context(permissions=["microphone"])
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{url}/console/login")
            await page.fill("input[name=token]", TOKEN)
            await page.click("button[type=submit]")
            # a new console says how to place the first call, and links to the phone
            assert await page.locator("#empty a[href='/console/phone']").count() == 1
            shots = os.environ.get("CONSOLE_SCREENSHOTS")
            if shots:
                await page.screenshot(path=str(Path(shots) / "console-empty.png"))
            await page.goto(f"{url}/console/phone")
            await page.click("#call")
            said = page.locator("#transcript .say", has_text="You said")
            await said.wait_for(timeout=40_000)
            transcript = await page.locator("#transcript").inner_text()
            assert "forward" in transcript.lower() and "meters" in transcript.lower()
            if shots:
                await page.screenshot(path=str(Path(shots) / "phone.png"))
            sent, played = await page.evaluate(
                "[window.phoneCall.framesSent, window.phoneCall.framesPlayed]"
            )
            assert sent > 100 and played > 50  # the microphone went out, the agent came back
            call_sid = await page.evaluate("window.phoneCall.sid")
            await page.click("#hangup")
            await page.locator("#after").wait_for(timeout=15_000)
            await page.click("#call-page")
            await page.wait_for_selector("#timeline svg")
            assert await page.locator("#transcript .say").count() >= 3
            await browser.close()
        log = await ended_log(offline.call_log_dir, call_sid)
    assert not errors, errors
    assert log[0]["event"] == "webhook" and log[0]["simulated"] is True
    end = log[-1]
    assert end["reason"] == "caller_hangup" and end["simulated"] is True
    assert end["cost_usd"]["carrier"] == 0
    assert next(r for r in log if r["event"] == "model.connecting")["backend"] == "local"
