"""Render the README's first screen (as a repository page shows it) to ``docs/readme.png``.

    .venv/bin/python docs/readme_screen.py

Markdown to HTML with the ``markdown`` package (mkdocs brings it), plain GitHub-like styles,
then Debian's Chromium through Playwright takes a 1280x900 screenshot. Not part of the site.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import markdown
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
STYLE = """body{font:16px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;
max-width:980px;margin:32px auto;padding:0 32px}h1,h2{border-bottom:1px solid #d1d9e0;
padding-bottom:.3em}code,pre{font-family:ui-monospace,monospace;font-size:85%;
background:#f6f8fa;border-radius:6px}pre{padding:16px;overflow:auto}code{padding:.2em .4em}
pre code{padding:0}a{color:#0969da;text-decoration:none}"""


async def main() -> None:
    html = markdown.markdown(
        (ROOT / "README.md").read_text(encoding="utf-8"), extensions=["fenced_code", "tables"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "readme.html"
        page_path.write_text(f"<!doctype html><style>{STYLE}</style>{html}", encoding="utf-8")
        shutil.copytree(ROOT / "docs", Path(tmp) / "docs")  # the images it shows
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(page_path.as_uri())
            await page.screenshot(path=str(ROOT / "docs" / "readme.png"))
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
