"""The README's quickstart, run as written in a fresh clone: its server command (which installs
everything into a new ``.venv``), then its call command from another shell; the embedded
offline model answers and reads the caller back.

It takes minutes (a fresh install of about 900 MB), so the README's test command leaves it out
and ``.ci/run`` runs it after the suite (``QUICKSTART_TEST=1``); run it yourself with
``QUICKSTART_TEST=1 .venv/bin/python -m pytest -n 0 tests/service/test_quickstart.py``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from telephony.observability.call_log import read_call_log

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.environ.get("QUICKSTART_TEST") != "1",
    reason="a fresh install takes minutes: .ci/run runs it with QUICKSTART_TEST=1",
)
INSTALL_S = 900


def blocks(section: str) -> list[str]:
    """The commands of the README's section (``sh`` and ``text`` code blocks), in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|text)\n(.+?)\n```", body)


def test_the_quickstart_as_written_answers_a_call(tmp_path: Path) -> None:
    server_command, test_command, call_command, *_ = blocks("Quickstart")
    assert "server.py" in server_command and "pytest" in test_command
    assert "telephony.simulate" in call_command
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        ["bash", "-c", server_command],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + INSTALL_S
        while not _up("http://127.0.0.1:8000/healthz"):
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(1)
        call = subprocess.run(
            ["bash", "-c", call_command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    assert call.returncode == 0, call.stdout + call.stderr
    assert "caller ended the call" in call.stdout and "saved what the caller heard" in call.stdout
    (path,) = (clone / "calls").glob("CA*.jsonl")
    said = [r["text"] for r in read_call_log(path) if r["event"] == "transcript.agent"]
    assert any(text.startswith("You said:") and "meters" in text for text in said), said
    assert "TRIAL MODE" in (tmp_path / "server.log").read_text()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
