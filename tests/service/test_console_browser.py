"""The operator console in a real browser: headless Chromium (Debian's ``chromium``, which
``.ci/run`` installs) driven by Playwright. Sign in, find a simulated call in the list, open it:
timeline, transcript, a recording whose length is the call's and whose player seeks when the
timeline is clicked; a call in progress appears in the live list and its hang-up button ends
it. No JavaScript errors on any page.

With ``CONSOLE_SCREENSHOTS=DIR`` the test also saves the list and a call page there (how
``docs/console-*.png`` were made)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from helpers import SILENCE, fixture_audio

from telephony.testing import tone

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the browser tests need Playwright (the test extra)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on this machine (.ci/run installs Debian's chromium package)",
)
TOKEN = "console-token-0123456789abcdef"


async def test_the_console_in_a_browser(live_server) -> None:
    overrides = {"console_token": TOKEN, "record_calls": True, "greeting": "Hello."}
    async with live_server(overrides=overrides, reply=lambda _: tone(600, 600)) as srv:
        done = await srv.call(fixture_audio("goforward.ulaw"), speed=2, tail_s=0.5)
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1500, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            # sign in (the list sends us to the form)
            await page.goto(f"{srv.base_url}/console")
            assert page.url.endswith("/console/login")
            await page.fill("input[name=token]", TOKEN)
            await page.click("button[type=submit]")
            for _ in range(100):  # the index is written just after the call ends
                if await page.locator(f"a[href='/console/calls/{done.call_sid}']").count():
                    break
                await page.reload()
            link = page.locator(f"a[href='/console/calls/{done.call_sid}']")
            assert await link.count() == 1
            shots = os.environ.get("CONSOLE_SCREENSHOTS")
            if shots:
                await page.screenshot(path=str(Path(shots) / "console-list.png"))
            await link.click()
            await page.wait_for_selector("#timeline svg")
            assert await page.locator("#transcript .say").count() >= 2
            # the recording: as long as the call, and the timeline seeks it
            duration = await page.eval_on_selector(
                "#player",
                "p => new Promise(r => p.readyState >= 1 ? r(p.duration)"
                " : p.addEventListener('loadedmetadata', () => r(p.duration)))",
            )
            assert duration == pytest.approx(done.frames_sent * 0.02, abs=0.05)
            left = float(await page.get_attribute("#timeline", "data-left") or 0)
            scale = float(await page.get_attribute("#timeline", "data-scale") or 0)
            box = await page.locator("#timeline svg").bounding_box()
            assert box is not None
            ratio = box["width"] / float(
                await page.eval_on_selector("#timeline svg", "s => s.viewBox.baseVal.width")
            )
            await page.mouse.click(box["x"] + (left + 1.5 * scale) * ratio, box["y"] + 100)
            position = await page.eval_on_selector("#player", "p => p.currentTime")
            assert position == pytest.approx(1.5, abs=0.05)
            if shots:
                await page.screenshot(path=str(Path(shots) / "console-call.png"), full_page=True)
            # a call in progress shows up live, and its hang-up button ends it
            await page.goto(f"{srv.base_url}/console")
            call = asyncio.create_task(srv.call(SILENCE * 8000 * 30, speed=1, tail_s=0.5))
            row = page.locator("#live tr.live")
            await row.first.wait_for(timeout=10_000)
            await row.first.locator("button").click()
            result = await asyncio.wait_for(call, 20)
            assert result.closed_by_server
            await page.wait_for_selector("#live tr.live", state="detached", timeout=10_000)
            assert await page.locator("#live-none").is_visible()
            await browser.close()
    assert not errors, errors
