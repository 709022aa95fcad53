"""The console's call list on a big history: 100 000 synthetic call logs.

    python bench/console.py [--calls 100000] [--pages 200]

Writes the logs (a webhook, a few records and a ``call.end`` each, as real calls leave them)
into a temporary directory, builds the index from nothing (``CallIndex.rebuild``, what a
missing index costs at start-up), then times list pages through the real app
(``GET /console`` with the bearer token, FastAPI's test client): the first page, a page deep in
the history, an outcome filter, a date filter and a CallSid search. Prints each as p50/p99 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fastapi.testclient import TestClient

from telephony.app import create_app
from telephony.config import Settings
from telephony.console import CallIndex

TOKEN = "bench-console-token-0123456789"
REASONS = ["caller_hangup", "agent_hangup", "idle_timeout", "transferred", "voicemail"]


def write_logs(directory: Path, calls: int) -> list[str]:
    rng = random.Random(7)
    sids = []
    start = 1_790_000_000.0
    for n in range(calls):
        sid = f"CA{rng.getrandbits(128):032x}"
        sids.append(sid)
        ts = start + n * 30
        records = [
            {
                "ts": ts,
                "call_sid": sid,
                "event": "webhook",
                "from": f"+1555{n:07d}",
                "to": "+15550002222",
                "direction": "inbound",
            },
            {"ts": ts + 0.01, "call_sid": sid, "event": "stream.start"},
            {"ts": ts + 1.2, "call_sid": sid, "event": "transcript.caller", "text": "hello"},
            {
                "ts": ts + 60,
                "call_sid": sid,
                "event": "call.end",
                "reason": REASONS[n % len(REASONS)],
                "duration_s": 60.0,
                "interruptions": n % 3,
                "metrics": {"turn_latency_p50_ms": 700 + n % 200},
                "cost_usd": {"total": 0.05},
            },
        ]
        (directory / f"{sid}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return sids


def timed(client: TestClient, params: dict[str, str], pages: int) -> tuple[float, float]:
    times = []
    for _ in range(pages):
        t0 = time.perf_counter()
        response = client.get("/console", params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        sids = write_logs(directory, args.calls)
        print(f"wrote {args.calls} logs in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        indexed = CallIndex(directory).rebuild()
        print(f"index built from nothing: {indexed} calls in {time.perf_counter() - t0:.1f} s")
        settings = Settings(
            call_log_dir=directory, console_token=TOKEN, allow_unsigned=True, _env_file=None
        )
        client = TestClient(create_app(settings))
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        cases = {
            "first page": {},
            "page 1000 (offset 50 000)": {"offset": "50000"},
            "outcome filter": {"outcome": "voicemail"},
            "date filter": {"since": "1970-01-01", "until": "2099-01-01"},
            "CallSid search": {"q": sids[len(sids) // 2][:14]},
        }
        print(f"{'page':30} {'p50 ms':>8} {'p99 ms':>8}")
        for name, params in cases.items():
            p50, p99 = timed(client, params, args.pages)
            print(f"{name:30} {p50:8.1f} {p99:8.1f}")


if __name__ == "__main__":
    main()
