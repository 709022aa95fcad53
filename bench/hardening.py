"""What strangers can make the server hold: big bodies and slow or silent sockets.

    python bench/hardening.py [--sockets 300] [--server-root DIR] [--server-files 256]

Runs ``server.py`` (from this checkout, or from ``--server-root``, to compare another version
in the same run) with a Twilio auth token, the SIP webhook and ``POST /calls`` enabled, and:

1. sends each POST route a 100 MiB body with no credentials, once with ``Content-Length`` and
   once chunked: the time to the answer's status line, the status, and the server's RSS growth
   over all of them;
2. opens ``--sockets`` connections from one client (a third silent, a third with headers that
   never finish, a third with a body that never finishes) while asking ``/healthz`` every
   50 ms: ``/healthz`` latency p50/max and failures throughout, and how long after opening
   each socket the server closed it (``HEADER_TIMEOUT`` and ``BODY_TIMEOUT`` are 2 s here).
   ``--server-files`` gives the server (not this client) that open-file limit, as a small
   container might.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, rss_kib, start_server

ROUTES = ["/incoming-call", "/call-status", "/openai/webhook", "/calls"]
BODY = 100 * 1024 * 1024
TIMEOUT_S = 2.0
WAIT_S = 20.0  # how long the bench waits for the server to close a socket


async def big_body(port: int, path: str, chunked: bool) -> tuple[float, str]:
    """Send a 100 MiB body; returns (seconds to the status line, the status line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{length}\r\n"
    writer.write(f"{head}Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
    t0 = time.monotonic()
    status = asyncio.create_task(reader.readline())
    chunk = b"a" * (1024 * 1024)
    try:
        for _ in range(BODY // len(chunk)):
            if status.done():
                break
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
            await writer.drain()
    except ConnectionError:
        pass
    try:
        line = await asyncio.wait_for(status, 30)
    except TimeoutError:
        line = b"(no answer in 30 s)"
    except ConnectionError:
        line = b"(closed: reset)"
    elapsed = time.monotonic() - t0
    writer.close()
    return elapsed, line.decode(errors="replace").strip() or "(closed)"


def healthz_ms(base_url: str) -> float | None:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=5) as response:
            response.read()
    except OSError:
        return None
    return (time.monotonic() - t0) * 1000


async def slow_sockets(port: int, base_url: str, count: int) -> dict[str, float]:
    opened: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
    probes: list[float | None] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            probes.append(await asyncio.to_thread(healthz_ms, base_url))
            await asyncio.sleep(0.05)

    prober = asyncio.create_task(probe())
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue
        if i % 3 == 1:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        elif i % 3 == 2:
            writer.write(b"POST /incoming-call HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            writer.write(b"Content-Type: application/x-www-form-urlencoded\r\n\r\nCallSid=")
        opened.append((time.monotonic(), reader, writer))
        await asyncio.sleep(0.005)

    async def lifetime(at: float, reader: asyncio.StreamReader) -> float:
        try:
            await asyncio.wait_for(reader.read(), WAIT_S)
        except TimeoutError:
            return float("inf")  # still open after WAIT_S
        except ConnectionError:
            pass
        return time.monotonic() - at

    lifetimes = await asyncio.gather(*(lifetime(at, reader) for at, reader, _ in opened))
    for _, _, writer in opened:
        writer.close()
    await asyncio.sleep(0.5)
    stop.set()
    await prober
    answered = [p for p in probes if p is not None]
    return {
        "sockets": len(opened),
        "healthz_probes": len(probes),
        "healthz_failed": len(probes) - len(answered),
        "healthz_p50_ms": statistics.median(answered) if answered else float("nan"),
        "healthz_max_ms": max(answered) if answered else float("nan"),
        "socket_life_max_s": max(lifetimes) if lifetimes else float("nan"),
        "still_open": sum(1 for life in lifetimes if life == float("inf")),
    }


async def run(sockets: int, server_root: Path, files: int | None) -> None:
    logs = Path(tempfile.mkdtemp(prefix="hardening-"))
    port = free_port()
    env = {
        "PORT": str(port),
        "PYTHONPATH": str(server_root),
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "TWILIO_AUTH_TOKEN": "bench-auth-token-0123456789",
        "OPENAI_WEBHOOK_SECRET": "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQ=",
        "DIAL_API_TOKEN": "bench-dial-token-0123456789",
        "CALL_LOG_DIR": str(logs),
        "LOG_LEVEL": "warning",
        "HEADER_TIMEOUT": str(TIMEOUT_S),
        "BODY_TIMEOUT": str(TIMEOUT_S),
    }
    server = start_server(env, logs, script=server_root / "server.py", files=files)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.sleep(0.5)
        rss_before = rss_kib(server.pid)
        print(f"server: {server_root}; open-file limit: {files or 'as inherited'}")
        print(f"{'route':<16} {'body':<8} {'answer':<28} {'time':>9}")
        for path in ROUTES:
            for chunked in (False, True):
                elapsed, line = await big_body(port, path, chunked)
                kind = "chunked" if chunked else "length"
                print(f"{path:<16} {kind:<8} {line[:28]:<28} {elapsed * 1000:>7.0f}ms", flush=True)
        await asyncio.sleep(1.0)
        growth = (rss_kib(server.pid) - rss_before) / 1024
        print(f"server RSS growth over the 8 bodies: {growth:.1f} MiB")
        row = await slow_sockets(port, base_url, sockets)
        print(
            f"{row['sockets']:.0f} slow sockets: /healthz {row['healthz_probes']:.0f} probes, "
            f"{row['healthz_failed']:.0f} failed, p50 {row['healthz_p50_ms']:.1f} ms, "
            f"max {row['healthz_max_ms']:.1f} ms; longest socket life "
            f"{row['socket_life_max_s']:.2f} s (timeouts {TIMEOUT_S:.0f} s); "
            f"{row['still_open']:.0f} still open after {WAIT_S:.0f} s"
        )
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--server-root", type=Path, default=ROOT)
    parser.add_argument("--server-files", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(run(args.sockets, args.server_root.resolve(), args.server_files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
