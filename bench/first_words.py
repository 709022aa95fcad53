"""How soon the caller hears the greeting: ``start`` → first greeting frame, by ring gap.

    .venv/bin/python bench/first_words.py [--calls 20] [--connect-ms 700] [--first-delta-ms 300]
                                          [--gaps 0 0.5 1.5] [--compare OTHER_CHECKOUT]

One ``server.py`` with ``GREETING`` set, against the loopback model made far away: its
WebSocket handshake is answered ``--connect-ms`` after the request, and a response's first
audio delta comes ``--first-delta-ms`` after ``response.create``. For each ring gap (the time
between Twilio's webhook and the stream's ``start``: Twilio fetches the TwiML, the phone rings,
the WebSocket opens), ``--calls`` calls one after another: the webhook, the gap, then the
stream. Per gap it prints, in ms, p50/p95/max of ``start`` → first greeting frame (the
caller's clock: the simulator's time since it sent ``start``) and of webhook → first frame.

With ``--compare``, the other checkout's ``server.py`` runs first (``before``), then this
one's. Issue 27's targets: after a 1.5 s ring, first frame within 100 ms of ``start`` (p95);
with no gap, no slower than before; webhook → first frame never slower than before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, other_checkout, start_server
from telephony.simulate import answer_call, simulate_call
from telephony.testing import LoopbackRealtimeServer, tone

TOKEN = "bench-auth-token-0123456789abcdef"
SILENCE = b"\xff" * 8000 * 3  # the caller says nothing: 3 s of μ-law silence


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_column(
    label: str, root: Path, gaps: list[float], calls: int, connect_s: float, first_delta_s: float
) -> dict[float, tuple[list[float], list[float]]]:
    logs = Path(tempfile.mkdtemp(prefix=f"first-words-{label}-"))
    port = free_port()
    found: dict[float, tuple[list[float], list[float]]] = {}
    async with LoopbackRealtimeServer(
        reply=lambda _turn: tone(600, 800),
        connect_delay_s=connect_s,
        first_delta_delay_s=first_delta_s,
    ) as model:
        env = {
            "PORT": str(port),
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "OPENAI_REALTIME_URL": model.url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CALL_LOG_DIR": str(logs),
            "GREETING": "Hello, thanks for calling.",
            "LOG_LEVEL": "warning",
            "PYTHONPATH": str(root),
        }
        server = await asyncio.to_thread(start_server, env, logs, None, root / "server.py")
        base = f"http://127.0.0.1:{port}"
        try:
            for gap in gaps:
                after_start: list[float] = []
                after_webhook: list[float] = []
                for _ in range(calls):
                    t0 = time.monotonic()
                    answer = await answer_call(base, auth_token=TOKEN)
                    await asyncio.sleep(max(0.0, gap - (time.monotonic() - t0)))
                    opened = time.monotonic()
                    result = await simulate_call(
                        base, SILENCE, answer=answer, tail_s=0.3, min_turns=1
                    )
                    first = result.turns[0].first_frame_at if result.turns else None
                    if first is None:
                        print(f"  {label} gap {gap}: no greeting heard")
                        continue
                    after_start.append(first * 1000)
                    after_webhook.append((opened - t0 + first) * 1000)
                found[gap] = (after_start, after_webhook)
        finally:
            server.terminate()
            server.wait(10)
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
    args = parser.parse_args()
    columns = [("before", other_checkout(args.compare))] if args.compare else []
    columns.append(("this", ROOT))
    results = {}
    for label, root in columns:
        results[label] = await run_column(
            label, root, args.gaps, args.calls, args.connect_ms / 1000, args.first_delta_ms / 1000
        )
    print(
        f"loopback: connect {args.connect_ms:.0f} ms, first delta {args.first_delta_ms:.0f} ms;"
        f" {args.calls} calls a gap; ms, p50 / p95 / max"
    )
    print("| ring gap | checkout | start → first frame | webhook → first frame |")
    print("|---|---|---|---|")
    for gap in args.gaps:
        for label, _ in columns:
            after_start, after_webhook = results[label][gap]
            print(f"| {gap:.1f} s | {label} | {row(after_start)} | {row(after_webhook)} |")


if __name__ == "__main__":
    asyncio.run(main())
