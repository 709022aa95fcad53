"""Shared by the bench commands: run ``server.py`` as a subprocess and read its resources."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: dict[str, str], log_dir: Path, core: int | None = None
) -> subprocess.Popen[bytes]:
    """``python server.py`` with ``env`` on top of ours, output to ``log_dir/server.out``; pinned
    to one CPU core with ``taskset`` when ``core`` is given. Returns once /healthz answers."""
    command = [sys.executable, str(ROOT / "server.py")]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    out = open(log_dir / "server.out", "wb")
    process = subprocess.Popen(
        command,
        cwd=log_dir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{env['PORT']}/healthz"
    for _ in range(400):
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(log_dir / 'server.out').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
