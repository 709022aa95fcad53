"""How soon the caller hears the greeting: ``start`` → first greeting frame, by ring gap.

    .venv/bin/python bench/first_words.py [--calls 20] [--connect-ms 700] [--first-delta-ms 300]
                                          [--gaps 0 0.5 1.5] [--compare OTHER_CHECKOUT] [--fleet]

One ``server.py`` with ``GREETING`` set, against the loopback model made far away: its
WebSocket handshake is answered ``--connect-ms`` after the request, and a response's first
audio delta comes ``--first-delta-ms`` after ``response.create``. For each ring gap (the time
between Twilio's webhook and the stream's ``start``: Twilio fetches the TwiML, the phone rings,
the WebSocket opens), ``--calls`` calls one after another: the webhook, the gap, then the
stream. Per gap it prints, in ms, p50/p95/max of ``start`` → first greeting frame (the
caller's clock: the simulator's time since it sent ``start``) and of webhook → first frame.

With ``--fleet``, each checkout also runs as a fleet of two instances sharing a Redis (the
valkey of the test extra), twice: the webhook reaches A and the stream B (a balancer that does
not keep them together: B connects a session of its own), and, with ``INSTANCE_PUBLIC_URL``
set on each, the webhook reaches A and the TwiML sends the stream to A itself.

With ``--compare``, the other checkout's ``server.py`` runs first (``before``), then this
one's. Issue 27's targets: after a 1.5 s ring, first frame within 100 ms of ``start`` (p95);
with no gap, no slower than before; webhook → first frame never slower than before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, other_checkout, start_redis, start_server
from telephony.simulate import answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

TOKEN = "bench-auth-token-0123456789abcdef"
SILENCE = b"\xff" * 8000 * 3  # the caller says nothing: 3 s of μ-law silence


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_column(
    label: str,
    root: Path,
    gaps: list[float],
    calls: int,
    connect_s: float,
    first_delta_s: float,
    fleet: str = "",
) -> dict[float, tuple[list[float], list[float]]]:
    """``fleet``: '' (one instance), ``split`` (webhook A, stream B) or ``own`` (each instance
    with ``INSTANCE_PUBLIC_URL``: the stream goes where the TwiML says)."""
    logs = Path(tempfile.mkdtemp(prefix="first-words-"))
    found: dict[float, tuple[list[float], list[float]]] = {}
    redis_port = free_port()
    redis = start_redis(redis_port, logs) if fleet else None
    async with LoopbackRealtimeServer(
        reply=lambda _turn: tone(600, 800),
        connect_delay_s=connect_s,
        first_delta_delay_s=first_delta_s,
    ) as model:
        env = {
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CALL_LOG_DIR": str(logs),
            "GREETING": "Hello, thanks for calling.",
            "LOG_LEVEL": "warning",
            "PYTHONPATH": str(root),
        }
        public_url = None
        if redis is not None:  # one public URL (the balancer's), two instances behind it
            public_url = "http://balancer.invalid"
            env |= {
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "STREAM_TOKEN_SECRET": "bench-stream-token-secret-0123456789",
                "PUBLIC_URL": public_url,
                "DRAIN_LB_GRACE": "0",  # the bench's own streams are over when it stops
            }
        servers, bases = [], []
        for name in ("A", "B") if fleet else ("A",):
            port = free_port()
            folder = logs / name
            folder.mkdir()
            instance = {**env, "PORT": str(port), "INSTANCE_ID": name, "CALL_LOG_DIR": str(folder)}
            if fleet == "own":
                instance["INSTANCE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
            servers.append(
                await asyncio.to_thread(start_server, instance, folder, None, root / "server.py")
            )
            bases.append(f"http://127.0.0.1:{port}")
        try:
            for gap in gaps:
                after_start: list[float] = []
                after_webhook: list[float] = []
                for _ in range(calls):
                    t0 = time.monotonic()
                    answer = await answer_call(bases[0], auth_token=TOKEN, public_url=public_url)
                    await asyncio.sleep(max(0.0, gap - (time.monotonic() - t0)))
                    opened = time.monotonic()
                    if fleet == "split":  # the balancer sends the stream to B
                        answer = answer.via(bases[-1])
                    result = await simulate_call(
                        "", SILENCE, answer=answer, tail_s=0.3, min_turns=1
                    )
                    first = result.turns[0].first_frame_at if result.turns else None
                    if first is None:
                        print(f"  {label} gap {gap}: no greeting heard")
                        continue
                    after_start.append(first * 1000)
                    after_webhook.append((opened - t0 + first) * 1000)
                found[gap] = (after_start, after_webhook)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
            if redis is not None:
                redis.kill()
    return found


def row(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):.0f} / {pct(values, 0.95):.0f} / {max(values):.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--connect-ms", type=float, default=700.0)
    parser.add_argument("--first-delta-ms", type=float, default=300.0)
    parser.add_argument("--gaps", type=float, nargs="+", default=[0.0, 0.5, 1.5])
    parser.add_argument("--compare", type=Path, help="another checkout, run first (before)")
    parser.add_argument("--fleet", action="store_true", help="also: webhook on A, stream on B")
    args = parser.parse_args()
    checkouts = [("before", other_checkout(args.compare))] if args.compare else []
    checkouts.append(("this", ROOT))
    columns = [(label, root, "") for label, root in checkouts]
    if args.fleet:
        columns += [(f"{label}, fleet A→B", root, "split") for label, root in checkouts]
        columns.append(("this, fleet own URLs", ROOT, "own"))  # INSTANCE_PUBLIC_URL is new
    results = {}
    for label, root, fleet in columns:
        results[label] = await run_column(
            label,
            root,
            args.gaps,
            args.calls,
            args.connect_ms / 1000,
            args.first_delta_ms / 1000,
            fleet,
        )
    print(
        f"loopback: connect {args.connect_ms:.0f} ms, first delta {args.first_delta_ms:.0f} ms;"
        f" {args.calls} calls a gap; ms, p50 / p95 / max"
    )
    print("| ring gap | checkout | start → first frame | webhook → first frame |")
    print("|---|---|---|---|")
    for gap in args.gaps:
        for label, _, _ in columns:
            after_start, after_webhook = results[label][gap]
            print(f"| {gap:.1f} s | {label} | {row(after_start)} | {row(after_webhook)} |")


if __name__ == "__main__":
    asyncio.run(main())
